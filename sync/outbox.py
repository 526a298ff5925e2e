"""Everything the ERP reads back: atomic files in outbox/, inputs filed in archive/ and rejected/.

Every write goes through sync.fileio.Folder: temp file in the same folder (O_EXCL, an
unpredictable name starting with '.', so an ERP watching outbox/ ignores it like we ignore its
own temp files) + fsync + rename + fsync of the folder, reached by descriptor without
following links: the ERP sees the old file or the new one, never half of one, and nobody who can
write the outbox can make us write anywhere else.

This module is also the ONE place where errors become text (`render_errors`), in the
configured language, from the catalog in sync.errors. Only sync.filing uses it.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from sync.fileio import Folder, WriteGroup, fsync_dir
from sync.journal import Doc, error_from_json

RESULT_SUFFIXES = (".status.json", ".status.txt", ".xml", ".pdf", ".receptor.json")
_INPUT_EXTS = (".txt", ".json", ".xml")
_NAME_MAX = 255  # bytes, ext4/NTFS
OUTBOX_FILE_MODE = 0o640  # the ERP's group reads results; other users of the machine do not
OUTBOX_DIR_MODE = 0o750


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
    """Paths and writes for one installation's outbox, archive and rejected folders.

    Results live in `outbox/<folder>/<NAME>.*` while a document is current, and beside its
    archived input once a newer input with the same NAME supersedes it. Inputs are filed under
    `archive/YYYY-MM-DD/<folder>/` or `rejected/<folder>/`, at a name no other file uses."""

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
        file_mode: int = OUTBOX_FILE_MODE,
    ) -> None:
        self.outbox, self.archive, self.rejected = Path(outbox), Path(archive), Path(rejected)
        self.lang, self.with_txt, self.tz = lang, status_txt, tz
        self.file_mode = file_mode
        self._roots = {p: Folder.open(p, mode=OUTBOX_DIR_MODE) for p in (self.outbox, self.archive, self.rejected)}
        self._root_strs = [(str(p), folder) for p, folder in self._roots.items()]
        self._lock = threading.Lock()
        self.extras: list[Callable[[Doc], dict[str, Any]]] = []  # entries merged into status.json
        self._reserved: set[tuple[str, str]] = set()
        for p in reserved:
            self._reserve_key(Path(p))

    def close(self) -> None:
        for folder in self._roots.values():
            folder.close()

    # --- where results live -------------------------------------------------------------------
    def results_base(self, doc: Doc) -> Path:
        """`<dir>/<NAME>` for a document's result files: the outbox, or beside its filed input
        once a newer document with the same NAME superseded it or retention moved them there
        (`retain_results`)."""
        if (doc.superseded or doc.retained) and doc.final_path:
            fp = Path(doc.final_path)
            return fp.with_name(_stem_of(fp.name))
        return self.outbox / doc.folder / doc.out_stem if doc.folder else self.outbox / doc.out_stem

    def result_path(self, doc: Doc, suffix: str) -> Path:
        """NAME.xml, NAME.pdf, NAME.status.json ... of a document, wherever it lives now."""
        base = self.results_base(doc)
        return base.with_name(base.name + suffix)

    def folder_of(self, path: Path, *, create: bool = True) -> Folder:
        """The Folder holding `path`, reached from its root by descriptor (never through a link).
        Plain string work: this runs for every file of every document."""
        parent = os.path.dirname(str(path))
        for root_path, root in self._root_strs:
            if parent == root_path:
                rel = ""
            elif parent.startswith(root_path) and parent[len(root_path)] == os.sep:
                rel = parent[len(root_path) + 1:].replace(os.sep, "/")
            else:
                continue
            return root.sub(rel, create=create, mode=OUTBOX_DIR_MODE)
        raise ValueError(f"{path} is outside the outbox, archive and rejected folders")

    def _dir_written(self, folder: Folder, dirs: set[str] | None) -> None:
        """A rename in `folder` must become durable: now, or with the batch's `dirs` (the caller
        fsyncs each once, `sync_dirs`, before anything says `filed`)."""
        if dirs is None:
            folder.fsync()
        else:
            dirs.add(str(folder.path))

    @staticmethod
    def sync_dirs(dirs: set[str]) -> None:
        for d in sorted(dirs):
            fsync_dir(d)

    # --- writes -----------------------------------------------------------------------------------
    def write_status(self, doc: Doc, history: Iterable[dict[str, Any]], xml: bytes | None = None,
                     extras: dict[str, Any] | None = None, dirs: set[str] | None = None,
                     group: WriteGroup | None = None) -> Path:
        """NAME.status.json (+ .status.txt), and NAME.xml first when given: the ERP that
        sees 'signed' finds the XML already there. One folder fsync for all of them. With a
        `group`, the files are staged in it (owned by the document's id) and appear when the
        group is committed."""
        base = self.results_base(doc)
        durable = doc.state != "received"
        status = status_dict(doc, history, self.lang, self.tz)
        for extra in self.extras:
            status.update(extra(doc))
        if extras:
            status.update(extras)
        data = json.dumps(status, ensure_ascii=False).encode("utf-8")  # one line: the C encoder (indent is pure Python)
        files = []
        if xml is not None:
            files.append((base.name + ".xml", xml, True))
        if self.with_txt:
            files.append((base.name + ".status.txt", status_txt(status), durable))
        files.append((base.name + ".status.json", data, durable))
        if group is not None:
            folder = group.hold(self.folder_of(base))
            for name, content, sync in files:
                group.write(doc.id, folder, name, content, mode=self.file_mode, durable=sync)
        else:
            with self.folder_of(base) as folder:
                for name, content, sync in files:
                    folder.write(name, content, mode=self.file_mode, durable=sync, sync=False)
                if durable:
                    self._dir_written(folder, dirs)
        return base.with_name(base.name + ".status.json")

    def write_result(self, doc: Doc, suffix: str, data: bytes) -> Path:
        """One more result file (NAME.pdf, NAME.receptor.json), written atomically."""
        path = self.result_path(doc, suffix)
        with self.folder_of(path) as folder:
            folder.write(path.name, data, mode=self.file_mode)
        return path

    def read_result(self, doc: Doc, suffix: str, limit: int = 64 << 20) -> bytes | None:
        """A result file's bytes (NAME.xml after a crash), read without following links; None
        when it is not there."""
        path = self.result_path(doc, suffix)
        try:
            with self.folder_of(path, create=False) as folder:
                return folder.read(path.name, limit)
        except FileNotFoundError:
            return None

    def has_xml(self, doc: Doc) -> bool:
        return self.has_result(doc, ".xml")

    def has_result(self, doc: Doc, suffix: str) -> bool:
        path = self.result_path(doc, suffix)
        try:
            with self.folder_of(path, create=False) as folder:
                return folder.exists(path.name)
        except FileNotFoundError:
            return False

    def archive_results(self, old: Doc) -> None:
        """Move a superseded document's result files beside its filed input (never overwrite)."""
        assert old.final_path, "only filed documents are superseded"
        src_base = self.outbox / old.folder / old.out_stem if old.folder else self.outbox / old.out_stem
        fp = Path(old.final_path)
        stem = _stem_of(fp.name)
        with self.folder_of(src_base) as src, self.folder_of(fp) as dst:
            for suffix in RESULT_SUFFIXES:
                name = src_base.name + suffix
                if not src.exists(name):
                    continue
                target, n = stem + suffix, 2
                while dst.exists(target):
                    target = f"{stem}{suffix}~{n}"
                    n += 1
                src.move(name, dst, target)

    def retain_results(self, doc: Doc) -> int:
        """Retention: move a document's result files from the outbox to beside its filed input
        (archive/YYYY-MM-DD/<folder>/ or rejected/<folder>/), under the input's stem: the place
        `results_base` names once `doc.retained` is set. Idempotent after a crash: a file already
        moved is not moved again, and where a newer one was written at the destination meanwhile
        (a status rewrite), the outbox's older copy is dropped, never put over it. Returns the
        files moved."""
        assert doc.final_path, "only filed documents are retained"
        src_base = self.outbox / doc.folder / doc.out_stem if doc.folder else self.outbox / doc.out_stem
        fp = Path(doc.final_path)
        stem = _stem_of(fp.name)
        moved = 0
        try:
            src = self.folder_of(src_base, create=False)
        except FileNotFoundError:
            return 0
        with src, self.folder_of(fp) as dst:
            for suffix in RESULT_SUFFIXES:
                name = src_base.name + suffix
                if not src.exists(name):
                    continue
                target = stem + suffix
                if dst.exists(target):
                    if suffix.startswith(".status"):
                        src.unlink(name)  # rewritten from the journal at the new place: this copy is older
                        continue
                    n = 2
                    while dst.exists(f"{target}~{n}"):
                        n += 1
                    target = f"{target}~{n}"
                src.move(name, dst, target, durable=False)
                moved += 1
            if moved:
                dst.fsync()  # one sync per folder for the document's files, before the journal says done
                src.fsync()
        return moved

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
        stem, dot, ext = doc.name.rpartition(".")
        if not dot or not stem:
            stem, ext = doc.name, ""
        stem = _fits(stem)
        ext = f".{ext}" if ext else ""
        with self._lock, self.folder_of(d / "x") as folder:
            for n in itertools.count(1):
                cand_stem = stem if n == 1 else f"{stem}~{n}"
                if self._free(folder, str(d), cand_stem, ext):
                    self._reserved.add((str(d), cand_stem))
                    return d / (cand_stem + ext)
        raise AssertionError("unreachable")

    def _free(self, folder: Folder, d: str, stem: str, ext: str) -> bool:
        if (d, stem) in self._reserved:
            return False
        names = {stem + ext, *(stem + e for e in _INPUT_EXTS), stem + ".status.json"}
        return not any(folder.exists(n) for n in names)

    def _reserve_key(self, p: Path) -> None:
        self._reserved.add((str(p.parent), _stem_of(p.name)))

    def release(self, final_path: str) -> None:
        with self._lock:
            p = Path(final_path)
            self._reserved.discard((str(p.parent), _stem_of(p.name)))

    def file_inputs(self, work: Folder, moves: Sequence[tuple[Hashable, str, str]],
                    dirs: set[str] | None = None) -> dict[Hashable, BaseException]:
        """Move claimed inputs to their final places, (owner, work_name, final_path) each
        (idempotent after a crash). Every destination folder is opened once: a batch's inputs
        share their day's folder. Returns what failed, by owner; the others are moved."""
        by_folder: dict[str, list[tuple[Hashable, str, str]]] = {}
        for move in moves:
            by_folder.setdefault(os.path.dirname(move[2]), []).append(move)
        failed: dict[Hashable, BaseException] = {}
        for group in by_folder.values():
            try:
                dst = self.folder_of(Path(group[0][2]))
            except Exception as exc:
                failed.update((owner, exc) for owner, _, _ in group)
                continue
            with dst:
                for owner, work_name, final_path in group:
                    try:
                        work.move(work_name, dst, os.path.basename(final_path), durable=False)
                    except Exception as exc:
                        failed[owner] = exc
                self._dir_written(dst, dirs)
        return failed


def _stem_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name[1:] else name
