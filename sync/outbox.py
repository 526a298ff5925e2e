"""Everything the ERP reads back: atomic files in outbox/, inputs filed in archive/ and rejected/.

Every write is temp file in the same folder + fsync + rename + fsync of the folder, so the
ERP sees either the old file or the new one, never a half-written one; on Windows the
rename is retried while the ERP holds the target open. The temp name starts with '.' so
an ERP watching outbox/ can ignore it like we ignore its own temp files.

This module is also the ONE place where errors become text (`render_errors`), in the
configured language, from the catalog in sync.errors.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Iterable

from sync.journal import Doc, error_from_json
from sync.watch.fs import durable_move, fsync_dir, replace_retrying

RESULT_SUFFIXES = (".status.json", ".status.txt", ".xml", ".pdf")
_INPUT_EXTS = (".txt", ".json", ".xml")
_NAME_MAX = 255  # bytes, ext4/NTFS
_tmp_counter = itertools.count()
_known_dirs: set[str] = set()  # folders known to exist: one mkdir per folder, not per write


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True, durable: bool = True) -> None:
    """Write `data` to `path` so readers never see a partial file (see module docstring).
    `sync_dir=False` leaves the folder fsync to the caller (one for several files);
    `durable=False` keeps atomicity but skips fsync (for transient states like 'received',
    which the journal recreates after a crash anyway)."""
    tmp = path.with_name(f".{path.name[:200]}.{os.getpid()}.{next(_tmp_counter)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    if str(path.parent) not in _known_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        _known_dirs.add(str(path.parent))
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # someone removed the folder meanwhile
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        replace_retrying(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir and durable:
        fsync_dir(path.parent)


def render_errors(doc: Doc, lang: str) -> list[dict[str, Any]]:
    """The one place journal errors become `{code, message, field, line, ...}` for the ERP."""
    return [error_from_json(e).render(lang) for e in doc.error_list]


def iso(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, tz or timezone.utc).astimezone(tz).isoformat(timespec="milliseconds")


def status_dict(doc: Doc, history: Iterable[dict[str, Any]], lang: str, tz: tzinfo | None = None) -> dict[str, Any]:
    """NAME.status.json content (the ERP contract in docs/daemon.md), from the journal row alone."""
    return {
        "source": doc.rel,
        "sha256": doc.sha256,
        "state": doc.state,
        "tipo_dte": doc.tipo_dte,
        "folio": doc.folio,
        "rut_emisor": doc.rut_emisor,
        "monto_total": doc.monto_total,
        "track_id": doc.track_id,
        "errors": render_errors(doc, lang),
        "updated_at": iso(doc.updated_at, tz),
        "history": [
            {"state": h["state"], "at": iso(h["at"], tz), **({"note": h["note"]} if h.get("note") else {})}
            for h in history
            if h["state"] != "gone"
        ],
        "station": doc.station,
        "input": doc.final_path,
        "xml": f"{doc.out_stem}.xml" if doc.folio is not None else None,
        "document_id": doc.id,
    }


def status_txt(status: dict[str, Any]) -> bytes:
    """NAME.status.txt: `key=value` lines for ERPs that cannot read JSON (UTF-8)."""

    def clean(v: Any) -> str:
        return "" if v is None else str(v).replace("\r", " ").replace("\n", " ")

    lines = [f"{k}={clean(status[k])}" for k in (
        "source", "sha256", "state", "tipo_dte", "folio", "rut_emisor", "monto_total", "track_id", "updated_at"
    )]
    errors = status["errors"]
    lines.append(f"errors={len(errors)}")
    for i, e in enumerate(errors, 1):
        for key in ("code", "message", "field", "line"):
            lines.append(f"error{i}.{key}={clean(e.get(key))}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _fits(name: str) -> str:
    """Shorten a stem so `name + longest suffix` stays within NAME_MAX bytes."""
    budget = _NAME_MAX - len(".status.json~999".encode())
    while len(name.encode("utf-8", "surrogateescape")) > budget:
        name = name[:-1]
    return name


class Outbox:
    """Paths and writes for one installation's outbox, archive and rejected folders."""

    def __init__(
        self,
        outbox: Path,
        archive: Path,
        rejected: Path,
        *,
        lang: str = "es",
        status_txt: bool = False,
        tz: tzinfo | None = None,
        reserved: Iterable[str] = (),
    ) -> None:
        self.outbox, self.archive, self.rejected = Path(outbox), Path(archive), Path(rejected)
        self.lang, self.with_txt, self.tz = lang, status_txt, tz
        self._lock = threading.Lock()
        self.extras: list[Any] = []  # callables doc -> dict merged into status.json (e.g. `print`)
        self._reserved: set[tuple[str, str]] = set()
        for p in reserved:
            self._reserve_key(Path(p))

    # --- where results live -------------------------------------------------------------------
    def results_base(self, doc: Doc) -> Path:
        """`<dir>/<NAME>` for a document's result files: the outbox, or beside its archived
        input once a newer document with the same NAME superseded it."""
        if doc.superseded and doc.final_path:
            fp = Path(doc.final_path)
            return fp.with_name(fp.name.rsplit(".", 1)[0] if "." in fp.name[1:] else fp.name)
        return self.outbox / doc.folder / doc.out_stem if doc.folder else self.outbox / doc.out_stem

    def _with(self, base: Path, suffix: str) -> Path:
        return base.with_name(base.name + suffix)

    # --- writes -----------------------------------------------------------------------------------
    def write_status(self, doc: Doc, history: Iterable[dict[str, Any]], xml: bytes | None = None) -> Path:
        """NAME.status.json (+ .status.txt), and NAME.xml first when given: the ERP that
        sees 'signed' finds the XML already there. One folder fsync for all of them."""
        base = self.results_base(doc)
        durable = doc.state != "received"
        if xml is not None:
            atomic_write(self._with(base, ".xml"), xml, sync_dir=False)
        status = status_dict(doc, history, self.lang, self.tz)
        for extra in self.extras:
            status.update(extra(doc))
        data = json.dumps(status, ensure_ascii=False, indent=1).encode("utf-8")
        if self.with_txt:
            atomic_write(self._with(base, ".status.txt"), status_txt(status), sync_dir=False, durable=durable)
        path = self._with(base, ".status.json")
        atomic_write(path, data, sync_dir=False, durable=durable)
        if durable:
            fsync_dir(path.parent)
        return path

    def write_xml(self, doc: Doc, xml: bytes) -> Path:
        path = self._with(self.results_base(doc), ".xml")
        atomic_write(path, xml)
        return path

    def has_xml(self, doc: Doc) -> bool:
        return self._with(self.results_base(doc), ".xml").exists()

    def archive_results(self, old: Doc) -> None:
        """Move a superseded document's result files beside its filed input (never overwrite)."""
        src_base = self.outbox / old.folder / old.out_stem if old.folder else self.outbox / old.out_stem
        assert old.final_path, "only filed documents are superseded"
        fp = Path(old.final_path)
        stem = fp.name.rsplit(".", 1)[0] if "." in fp.name[1:] else fp.name
        for suffix in RESULT_SUFFIXES:
            src = self._with(src_base, suffix)
            if not os.path.lexists(src):
                continue
            dst = fp.with_name(stem + suffix)
            n = 2
            while os.path.lexists(dst):
                dst = fp.with_name(f"{stem}{suffix}~{n}")
                n += 1
            durable_move(src, dst)

    # --- filing inputs --------------------------------------------------------------------------
    def choose_final_path(self, doc: Doc, *, rejected: bool, now: float) -> Path:
        """A free path in archive/YYYY-MM-DD/<folder>/ or rejected/<folder>/, reserved at once.

        Free means no input and no result file share its stem there, so when this document
        is superseded later its results can sit beside it under the same stem.
        """
        if rejected:
            d = self.rejected / doc.folder if doc.folder else self.rejected
        else:
            day = datetime.fromtimestamp(now, self.tz).strftime("%Y-%m-%d")  # tz None: local time
            d = self.archive / day / doc.folder if doc.folder else self.archive / day
        name = doc.name
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext = name, ""
        stem = _fits(stem)
        ext = f".{ext}" if ext else ""
        with self._lock:
            for n in itertools.count(1):
                cand_stem = stem if n == 1 else f"{stem}~{n}"
                if self._free(d, cand_stem, ext):
                    path = d / (cand_stem + ext)
                    self._reserved.add((str(d), cand_stem))
                    return path
        raise AssertionError("unreachable")

    def _free(self, d: Path, stem: str, ext: str) -> bool:
        if (str(d), stem) in self._reserved:
            return False
        names = {stem + ext, *(stem + e for e in _INPUT_EXTS), stem + ".status.json"}
        return not any(os.path.lexists(d / n) for n in names)

    def _reserve_key(self, p: Path) -> None:
        stem = p.name.rsplit(".", 1)[0] if "." in p.name[1:] else p.name
        self._reserved.add((str(p.parent), stem))

    def release(self, final_path: str) -> None:
        with self._lock:
            p = Path(final_path)
            stem = p.name.rsplit(".", 1)[0] if "." in p.name[1:] else p.name
            self._reserved.discard((str(p.parent), stem))

    def file_input(self, work: Path, final_path: Path) -> None:
        """Move the claimed input to its final place (idempotent after a crash)."""
        durable_move(work, final_path)
