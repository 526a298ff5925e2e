"""How fake-sii behaves: the real SII's habits (each one a switch, so a test can turn one on
at a time), injected network faults, and forced answers that make every documented code
reachable on demand."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Faults:
    """Injected faults: rates are probabilities per request (per document for reject/objection)."""

    timeout: float = 0.0
    reset: float = 0.0
    error500: float = 0.0
    status: dict[str, float] = field(default_factory=dict)  # DTEUpload STATUS -> rate
    reject: float = 0.0
    objection: float = 0.0
    stall: float = 2.0  # seconds a "timeout" holds the connection
    groups: tuple[str, ...] = ("auth", "upload", "query", "provider")
    seed: int | None = None
    lost_answer: float = 0.5  # share of upload timeouts that happen after the upload was filed

    @classmethod
    def mixed(cls, rate: float, seed: int | None = None, **kw: Any) -> Faults:
        """`rate` of requests fail: a third each timeouts, resets and 500s."""
        return cls(timeout=rate / 3, reset=rate / 3, error500=rate / 3, seed=seed, **kw)


@dataclass
class Behaviour:
    """The real SII's habits. Defaults are what the SII does; tests switch single ones off
    (or make them harsher) to prove what the client does about each.

    - processing_delay: seconds (uniform in [lo, hi]) between an upload and its result. Until
      then the envío is not visible to QueryEstUp for the first half (-11, ERR_CODE 2: what
      the SII answers for an envío it has not filed yet), then "in process" (SOK CRT FOK PDR);
      the documents are not visible to QueryEstDte / boleta documento (FAU) until it ends.
    - token_ttl: a token's lifetime (seconds from its creation).
    - dead_session: what DTEUpload answers to a dead or unknown TOKEN: "html" (HTTP 200 and an
      HTML page: what the real SII does) or "status5" (RECEPCIONDTE STATUS 5, as the manual).
    - require_prog_ua: DTEUpload answers RECEPCIONDTE only to a User-Agent with "PROG 1.0"
      (upload manual §2, v1.2 note); any other client gets the browser's HTML page.
    - body_first: CrSeed/GetTokenFromSeed answer RESP_BODY before RESP_HDR (auth manual cap. 8).
    - seed_check: "sii" accepts the signed seeds that clients in production use (the seed
      anywhere, a c14n or enveloped Reference, an RSA-SHA1 or RSA-SHA256 SignatureValue over
      SignedInfo); "strict" demands the manual's profile exactly (URI="", enveloped transform,
      digest and signature as declared).
    - query_data: QueryEstDte / boleta documento compare date, receptor and amount (DNK).
    - rate_limit: the boleta REST API answers `rate_limit_status` (429, or 405 as public client
      code reports) with Retry-After to more than n requests within s seconds.
    """

    processing_delay: tuple[float, float] = (0.0, 0.0)
    processing_polls: int = 1  # QueryEstUp / estado answers "in process" this many times after the delay
    token_ttl: float = 3600.0
    dead_session: str = "html"
    require_prog_ua: bool = True
    body_first: bool = True
    seed_check: str = "sii"
    query_data: bool = True
    rate_limit: tuple[int, float] | None = None
    rate_limit_status: int = 429
    retry_after: float = 1.0


# Forced answers: service -> the code its next requests answer.
SERVICES = ("seed", "token", "upload", "boleta_upload", "est_up", "est_dte", "boleta_estado", "boleta_doc")


class Forced:
    """Answers forced on a service, for its next `times` requests or for `seconds`; tests use
    them to reach every documented code (and undocumented ones) on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: dict[str, list[list[Any]]] = {}  # service -> [[code, times_left, until]]
        self.used: dict[tuple[str, str], int] = {}

    def force(self, service: str, code: str, *, times: int | None = 1, seconds: float | None = None) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown fake-sii service {service!r} ({', '.join(SERVICES)})")
        until = time.monotonic() + seconds if seconds is not None else None
        with self._lock:
            self._queue.setdefault(service, []).append([code, None if seconds is not None else times, until])

    def take(self, service: str) -> str | None:
        with self._lock:
            entries = self._queue.get(service) or []
            while entries:
                code, left, until = entries[0]
                if until is not None and time.monotonic() >= until:
                    entries.pop(0)
                    continue
                if left is not None:
                    entries[0][1] = left - 1
                    if entries[0][1] <= 0:
                        entries.pop(0)
                self.used[(service, code)] = self.used.get((service, code), 0) + 1
                return str(code)
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


class RateLimit:
    """A sliding window over the boleta API's requests."""

    def __init__(self, limit: tuple[int, float] | None) -> None:
        self.limit = limit
        self._times: list[float] = []
        self._lock = threading.Lock()
        self.refused = 0

    def allow(self) -> bool:
        if self.limit is None:
            return True
        n, window = self.limit
        now = time.monotonic()
        with self._lock:
            self._times = [t for t in self._times if now - t < window]
            if len(self._times) >= n:
                self.refused += 1
                return False
            self._times.append(now)
            return True


def delay_of(behaviour: Behaviour, rng: random.Random) -> float:
    lo, hi = behaviour.processing_delay
    return rng.uniform(lo, hi) if hi > lo else lo
