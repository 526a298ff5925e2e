"""The one retry policy: exponential backoff with a cap and a choice of jitter.

Every stage that retries (the daemon's workers, printing, the uplink, delivery) asks a
`Backoff` for the delay before attempt n+1, so "how long do we wait" is read in one place and
configured the same way everywhere (`*_base`, `*_cap` in seconds).

- jitter "none":  min(cap, base * 2**n)                 (a printer: predictable, ordered)
- jitter "full":  uniform(0, min(cap, base * 2**n))     (many clients, one server: AWS "full
                  jitter" spreads a thundering herd after an outage)
- jitter "equal": the upper half of that range           (polling: never sooner than half)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

Jitter = Literal["none", "full", "equal"]
_MAX_EXPONENT = 40  # 2**40 * any sane base is far past any cap; keeps floats finite


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float
    jitter: Jitter = "none"
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def ceiling(self, attempt: int) -> float:
        """The longest wait after `attempt` failures (attempt 0 = the first failure)."""
        return min(self.cap, self.base * float(2 ** min(max(attempt, 0), _MAX_EXPONENT)))

    def delay(self, attempt: int) -> float:
        top = self.ceiling(attempt)
        if self.jitter == "full":
            return self.rng.uniform(0.0, top)
        if self.jitter == "equal":
            return self.rng.uniform(top / 2, top)
        return top
