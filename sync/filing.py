"""The Filing: the one place a document's record changes.

It owns the journal (sync.journal: the durable record) and the outbox (sync.outbox: what the
ERP reads), and keeps them in step. Everything that happens to a document goes through it:

    claim(batch)                       ingest: rename into work/, hash, resolve the name
    prepare(doc) -> PreparedInput      a worker: supersede, 'received', read the input (bounded)
    decision(doc, outcome)             the engine's outcome -> signed | rejected_input | error
    decide_many(decisions)             one commit for a batch
    file(doc, dte)                     status + NAME.xml, stages' on_signed, input archived, filed
    update_state(doc_id, state, ...)   later stages: queued, sent, accepted ...; stages' on_state
    refresh(doc_id)                    a stage's own status entry changed
    signed_dte(doc)                    the SignedDte of a filed document (from NAME.xml)
    snapshot(), queue(), documents()   read-only views for `status`, `queue`, reports, the panel

The daemon (sync.daemon) only runs threads around it; stages (sync.stage) get it at bind time
and never see the daemon. Writes follow one rule: the journal step is durable before the effect
it announces can be lost, and every effect (outbox write, move) is idempotent, so after SIGKILL
each unfinished row simply runs again from its step.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sync.errors import DteSyncError, DteSyncErrors, as_error_list
from sync.fileio import Folder, Identity, TooLarge, UnsafeFile, WriteGroup
from sync.journal import FILE_NAME as JOURNAL_FILE
from sync.journal import ClaimIntent, Decision, Doc, Journal
from sync.outbox import Outbox, render_errors
from sync.parse import DEFAULT_MAX_BYTES
from sync.signed import NotASignedDte, SignedDte
from sync.states import DocState
from sync.watch.rules import INPUT_EXTENSIONS, split_name

if TYPE_CHECKING:
    from sync.stage import Stage
    from sync.watch.inbox import Ready

log = logging.getLogger("dtesync.filing")

# Codes that say "this installation cannot sign right now", not "this input is wrong": the
# document ends `error` (an admin fixes the installation and the ERP sends it again).
ENVIRONMENT_PREFIXES = ("CAF_", "FOLIO", "CERT_", "SECRET_", "CONFIG_", "SCHEMA_", "INTERNAL", "STATE_")
NAME_BYTES_MAX = 200  # an input name longer than this cannot carry our result suffixes on ext4/NTFS


def state_for(errors: Sequence[DteSyncError]) -> DocState:
    """rejected_input when the input must change, error when the installation must."""
    env = any(e.code.startswith(ENVIRONMENT_PREFIXES) for e in errors)
    return DocState.ERROR if env else DocState.REJECTED_INPUT


@dataclass(frozen=True)
class Folders:
    inbox: Path
    outbox: Path
    archive: Path
    rejected: Path
    state: Path


@dataclass(frozen=True)
class Prepared:
    """A claimed document on its way to the engine: its bytes, or the decision already made
    without the engine (duplicate, unreadable, NAME_IN_PROGRESS); both None if it vanished."""

    doc: Doc
    data: bytes | None = None
    decided: Doc | None = None


class Filing:
    def __init__(
        self,
        folders: Folders,
        *,
        lang: str = "es",
        status_txt: bool = False,
        tz: tzinfo | None = None,
        write_received: bool = False,
        max_input_bytes: int = DEFAULT_MAX_BYTES,
        allow_network_state: bool = False,
    ) -> None:
        self.folders = folders
        self.lang, self.tz = lang, tz
        self.status_txt = status_txt
        self.write_received = write_received
        self.max_input_bytes = max_input_bytes
        self.allow_network_state = allow_network_state
        self.stages: list[Stage] = []
        self.ship_events = False  # cluster mode (sync.cluster): the journal keeps an outbox of changes
        self._journal: Journal | None = None
        self._out: Outbox | None = None
        self._inbox: Folder | None = None
        self._work: Folder | None = None
        self.work_dir: Path | None = None
        self._status_lock = threading.Lock()
        # Names whose document is decided but not yet filed: its final status may already be
        # out, so a new input under that name waits a moment instead of being refused.
        self._finishing: dict[tuple[str, str], int] = {}
        self._finishing_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------------------
    def open(self) -> None:
        f = self.folders
        for p in (f.inbox, f.outbox, f.archive, f.rejected):
            p.mkdir(parents=True, exist_ok=True)
        f.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._journal = Journal(f.state / JOURNAL_FILE, allow_network=self.allow_network_state,
                                events=self.ship_events)
        try:
            self._inbox = Folder.open(f.inbox)
            self.work_dir = choose_work_dir(f.inbox, f.state)
            self._work = Folder.open(self.work_dir, mode=0o700)
            self._out = Outbox(f.outbox, f.archive, f.rejected, lang=self.lang, status_txt=self.status_txt, tz=self.tz,
                               reserved=self._journal.reserved_paths())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for closable in (self._out, self._work, self._inbox, self._journal):
            if closable is not None:
                closable.close()
        self._out = self._work = self._inbox = None
        self._journal = None

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the Filing is not open")
        return self._journal

    @property
    def out(self) -> Outbox:
        if self._out is None:
            raise RuntimeError("the Filing is not open")
        return self._out

    @property
    def work(self) -> Folder:
        if self._work is None:
            raise RuntimeError("the Filing is not open")
        return self._work

    @property
    def inbox(self) -> Folder:
        if self._inbox is None:
            raise RuntimeError("the Filing is not open")
        return self._inbox

    # --- ingest: claims ----------------------------------------------------------------------------------
    def claim(self, batch: Sequence[Ready]) -> tuple[list[Doc], list[Ready]]:
        """Claim complete files: intent in the journal, rename into work/ (by descriptor, a link
        moved as a link, never followed), hash what was moved, resolve names. Returns the
        documents now claimed, in claim order, and the files held back because the document that
        holds their name is being filed right now (claim them again in a moment)."""
        held: list[Ready] = []
        with self._finishing_lock:
            if self._finishing:
                held = [r for r in batch if (r.folder, split_name(safe_name(r.name)[0])[0]) in self._finishing]
        if held:
            batch = [r for r in batch if r not in held]
        intents = [_intent(r) for r in batch]
        ids = self.journal.begin_claims(intent for intent, _ in intents)
        dropped: list[int] = []
        claimed: list[tuple[int, str | None]] = []
        naming: dict[int, DteSyncError] = {}
        for doc_id, r, (it, name_error) in zip(ids, batch, intents, strict=True):
            try:
                with self.inbox.sub(r.folder) as src:
                    src.move(r.name, self.work, f"{doc_id}{it.ext.lower()}", durable=False)
            except FileNotFoundError:
                dropped.append(doc_id)  # deleted meanwhile: nothing to answer
                continue
            except OSError as exc:  # Windows: still open by its writer; a station folder swapped for a link
                log.info("filing: claim failed, will retry", extra={"file": _printable(r.rel), "error": str(exc)})
                dropped.append(doc_id)
                continue
            for m in r.markers:
                try:
                    os.unlink(m)  # a marker is a signal, not a document
                except OSError:
                    pass
            claimed.append((doc_id, self._hash_claimed(f"{doc_id}{it.ext.lower()}")))
            if name_error is not None:
                naming[doc_id] = name_error
        if claimed:
            self.work.fsync()
        self.journal.drop_claims(dropped)
        docs = self.journal.mark_claimed(claimed)
        if naming:
            docs = [self._reject_name(d, naming[d.id]) if d.id in naming else d for d in docs]
        return docs, held

    def _hash_claimed(self, work_name: str) -> str | None:
        """sha256 of a claimed regular file of acceptable size; None for anything that will be
        rejected unread (a link, a special file, a file over the size limit)."""
        try:
            st = self.work.lstat(work_name)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_input_bytes:
            return None
        return self.work.sha256(work_name, expect=Identity.of(st))

    def _reject_name(self, doc: Doc, error: DteSyncError) -> Doc:
        if doc.state != "received":
            return doc
        final = self.out.choose_final_path(doc, rejected=True, now=time.time())
        (decided,) = self.decide_many([Decision(doc.id, DocState.REJECTED_INPUT, str(final), errors=[error])])
        return decided

    def recover_claims(self) -> list[Doc]:
        """After a crash: finish or forget claims cut short; returns every document a worker must
        take up again (claimed or decided), oldest first."""
        to_claim: list[tuple[int, str | None]] = []
        to_drop: list[int] = []
        for doc in self.journal.unfinished():
            if doc.step != "claiming":
                continue
            if self.work.exists(doc.work_name):
                to_claim.append((doc.id, self._hash_claimed(doc.work_name)))
            elif self._in_inbox(doc):
                to_drop.append(doc.id)  # the rename never happened: the scan claims it again
            else:
                self.journal.gone(doc.id, "vanished before the claim completed")
        self.journal.drop_claims(to_drop)
        self.journal.mark_claimed(to_claim)
        resumed = [d for d in self.journal.unfinished() if d.step in ("claimed", "decided")]
        self._finishing_now(d for d in resumed if d.step == "decided")
        return resumed

    def _finishing_now(self, docs: Iterable[Doc]) -> None:
        with self._finishing_lock:
            for d in docs:
                self._finishing[(d.folder, d.out_stem)] = d.id

    def _finished(self, doc: Doc) -> None:
        with self._finishing_lock:
            if self._finishing.get((doc.folder, doc.out_stem)) == doc.id:
                del self._finishing[(doc.folder, doc.out_stem)]

    def _in_inbox(self, doc: Doc) -> bool:
        try:
            with self.inbox.sub(doc.folder) as src:
                return src.exists(doc.name)
        except OSError:
            return False

    def flush(self) -> None:
        """Commit deferred 'filed' marks (group commit), e.g. when the ingest loop is idle."""
        self.journal.flush()

    # --- a worker: from claimed to decided -----------------------------------------------------------------
    def prepare(self, doc: Doc) -> Prepared:
        """A claimed input up to the engine (see Prepared)."""
        if doc.state == DocState.DUPLICATE:
            final = self.out.choose_final_path(doc, rejected=False, now=time.time())
            (decided,) = self.decide_many([Decision(doc.id, DocState.DUPLICATE, str(final))])
            return Prepared(doc, decided=decided)
        if doc.state == DocState.REJECTED_INPUT:  # a NAME_IN_PROGRESS conflict, decided at claim time
            final = self.out.choose_final_path(doc, rejected=True, now=time.time())
            (decided,) = self.decide_many([Decision(doc.id, DocState.REJECTED_INPUT, str(final))])
            return Prepared(doc, decided=decided)
        for old in self.journal.superseding(doc.folder, doc.out_stem):
            self.out.archive_results(old)
            self.journal.supersede_done(old.id)
        if self.write_received:
            self.write_status(doc)
        data, errors = self.read_input(doc)
        if data is not None:
            return Prepared(doc, data=data)
        if errors is None:
            return Prepared(doc)
        (decision, _) = self.decision(doc, DteSyncErrors(errors))
        (decided,) = self.decide_many([decision])
        return Prepared(doc, decided=decided)

    def announce_waiting(self, doc_id: int) -> None:
        """A document that will wait (a transient failure, its retry later) gets its `received`
        status now, so the ERP sees it is held. Called only while no worker holds the document."""
        doc = self.journal.get(doc_id)
        if doc is not None and doc.step == "claimed" and doc.state == DocState.RECEIVED:
            self.write_status(doc)

    def read_input(self, doc: Doc) -> tuple[bytes | None, list[DteSyncError] | None]:
        """The claimed file's bytes (bounded, never through a link), or why it cannot be an
        input; (None, None) if it vanished."""
        name = doc.work_name
        try:
            st = self.work.lstat(name)
        except FileNotFoundError:
            log.error("filing: claimed input disappeared from the work folder", extra={"doc": doc.id})
            self.journal.gone(doc.id, "claimed input disappeared")
            return None, None
        if stat.S_ISLNK(st.st_mode):
            try:
                target = self.work.readlink(name)
            except OSError:
                target = "?"
            return None, [DteSyncError("INPUT_SYMLINK", found=target, source=doc.rel)]
        if not stat.S_ISREG(st.st_mode):
            return None, [DteSyncError("INPUT_SPECIAL_FILE", found=_kind(st.st_mode), source=doc.rel)]
        if doc.ext.lower() not in INPUT_EXTENSIONS:
            return None, [DteSyncError("INPUT_UNKNOWN_FORMAT", expected=", ".join(INPUT_EXTENSIONS),
                                       found=doc.ext or doc.name, source=doc.rel)]
        try:
            data = self.work.read(name, self.max_input_bytes, expect=Identity.of(st), single_link=True)
        except TooLarge as exc:
            return None, [DteSyncError("INPUT_TOO_LARGE", found=exc.seen, expected=exc.limit, source=doc.rel)]
        except UnsafeFile as exc:
            if "hard link" in exc.why:
                return None, [DteSyncError("INPUT_HARDLINK", found=st.st_nlink, source=doc.rel)]
            return None, [DteSyncError("INPUT_SPECIAL_FILE", found=exc.why, source=doc.rel)]
        if not data:
            return None, [DteSyncError("INPUT_EMPTY", source=doc.rel)]
        return data, None

    def decision(self, doc: Doc, outcome: SignedDte | BaseException) -> tuple[Decision, SignedDte | None]:
        """The engine's outcome as the document's decision and destination: signed, or
        rejected_input / error with its errors. (A failure that is nobody's fault is the
        daemon's to retry; `give_up` files it as an error.)"""
        if isinstance(outcome, SignedDte):
            final = self.out.choose_final_path(doc, rejected=False, now=time.time())
            return Decision(
                doc.id, DocState.SIGNED, str(final), tipo_dte=outcome.tipo_dte, folio=outcome.folio,
                rut_emisor=outcome.rut_emisor, monto_total=outcome.monto_total, rut_receptor=outcome.rut_receptor,
                fch_emis=outcome.fch_emis.isoformat(), mnt_neto=outcome.mnt_neto, mnt_exe=outcome.mnt_exe,
                iva=outcome.iva, rzn_soc_recep=outcome.rzn_soc_recep,
            ), outcome
        errors = as_error_list(outcome, doc.rel)
        state = state_for(errors) if isinstance(outcome, (DteSyncError, DteSyncErrors)) else DocState.ERROR
        final = self.out.choose_final_path(doc, rejected=True, now=time.time())
        return Decision(doc.id, state, str(final), errors=errors), None

    def decide_many(self, decisions: Iterable[Decision]) -> list[Doc]:
        """A batch's decisions in one commit (one fsync)."""
        docs = self.journal.decide_many(decisions)
        self._finishing_now(docs)
        return docs

    def bump_attempts(self, doc_id: int) -> int:
        return self.journal.bump_attempts(doc_id)

    # --- a worker: filing ---------------------------------------------------------------------------------
    def file_many(self, items: Sequence[tuple[Doc, SignedDte | None]], *,
                  defer_commit: bool = False) -> list[BaseException | None]:
        """File a batch of decided documents as one group commit; one outcome per document
        (None when filed). First every document's NAME.xml and final status, written as one
        WriteGroup (all staged, then all fsynced, the disk's waits overlapping, then renamed:
        NAME.xml before its status); then for each the stages' on_signed and the input moved to
        archive/ or rejected/; then each folder fsynced once, and only then the documents marked
        `filed` (one journal commit, or riding on the next one with `defer_commit`). `dte` is
        None after a crash (NAME.xml is then already written) or for rejections."""
        dirs: set[str] = set()
        group = WriteGroup()
        errors: dict[int, BaseException] = {}
        dtes: list[SignedDte | None] = []
        answered = [doc for doc, _ in items if doc.state != DocState.DUPLICATE]
        histories = self.journal.histories([doc.id for doc in answered])
        extras = self.status_entries(answered)
        for doc, dte in items:
            try:
                dtes.append(self._final_status(doc, dte, group, histories.get(doc.id, []), extras.get(doc.id, {})))
            except Exception as exc:
                group.drop(doc.id)
                errors[doc.id] = exc
                dtes.append(None)
        errors.update(cast("dict[int, BaseException]", group.commit(dirs)))
        committed = [(doc, dte) for (doc, _), dte in zip(items, dtes, strict=True) if doc.id not in errors]
        self._on_signed_many([(doc, dte) for doc, dte in committed if doc.state == DocState.SIGNED and dte is not None])
        errors.update(self._file_inputs([doc for doc, _ in committed], dirs))
        Outbox.sync_dirs(dirs)
        filed = [doc for doc, _ in items if doc.id not in errors]
        if filed:
            self.journal.filed_many((d.id for d in filed), defer=defer_commit)
        for doc in filed:
            self._finished(doc)
            self._answer_duplicate(doc)
        return [errors.get(doc.id) for doc, _ in items]

    def file(self, doc: Doc, dte: SignedDte | None, *, defer_commit: bool = False) -> None:
        """`file_many` of one document; raises what went wrong."""
        (error,) = self.file_many([(doc, dte)], defer_commit=defer_commit)
        if error is not None:
            raise error

    def _final_status(self, doc: Doc, dte: SignedDte | None, group: WriteGroup,
                      history: list[dict[str, Any]], extras: dict[str, Any]) -> SignedDte | None:
        """NAME.xml and the final status (from the batch's history and stage entries), staged in
        `group`; the SignedDte for the stages."""
        assert doc.final_path
        if doc.state != DocState.DUPLICATE:
            self.out.write_status(doc, history, dte.dte_xml if dte is not None else None, extras, None, group)
        if doc.state == DocState.SIGNED and dte is None:
            dte = self.signed_dte(doc)
            if dte is None:
                log.error("filing: signed document without its NAME.xml; later stages skip it",
                          extra={"doc": doc.id, "source": doc.rel})
        return dte

    def _file_inputs(self, docs: Sequence[Doc], dirs: set[str]) -> dict[int, BaseException]:
        """The inputs moved to archive/ or rejected/, once their statuses are in place; what
        failed, by document id (an input already gone is logged, not a failure)."""
        failed = self.out.file_inputs(self.work, [(doc.id, doc.work_name, cast(str, doc.final_path)) for doc in docs], dirs)
        errors: dict[int, BaseException] = {}
        for doc in docs:
            exc = failed.get(doc.id)
            if isinstance(exc, FileNotFoundError):
                log.error("filing: input missing when filing", extra={"doc": doc.id, "source": doc.rel})
            elif exc is not None:
                errors[doc.id] = exc
                continue
            self.out.release(cast(str, doc.final_path))
        return errors

    def _answer_duplicate(self, doc: Doc) -> None:
        if doc.state == DocState.DUPLICATE and doc.dup_of is not None:
            orig = self.journal.get(doc.dup_of)
            if orig is not None and orig.step == "filed":
                self.write_status(orig)  # answer again with the existing result

    def needs_xml(self, doc: Doc) -> bool:
        """A signed document decided before a crash whose NAME.xml was never written."""
        return doc.state == DocState.SIGNED and not self.out.has_xml(doc)

    def give_up(self, doc: Doc, exc: BaseException) -> Decision:
        """The engine kept failing for reasons that are not the input's: file it as an error."""
        errors = as_error_list(exc, doc.rel)
        final = self.out.choose_final_path(doc, rejected=True, now=time.time())
        return Decision(doc.id, DocState.ERROR, str(final), errors=errors)

    def _on_signed_many(self, signed: Sequence[tuple[Doc, SignedDte]]) -> None:
        if not signed:
            return
        for stage in self.stages:
            try:
                stage.on_signed_many(signed)
            except Exception:
                log.exception("filing: a stage failed on signed documents",
                              extra={"stage": stage.name, "docs": [doc.id for doc, _ in signed]})

    def status_entries(self, docs: Sequence[Doc], *, skip: Stage | None = None) -> dict[int, dict[str, Any]]:
        """Every stage's status entries for a batch, merged per document: what NAME.status.json,
        the panel and the cluster's record carry besides the journal's row. `skip`: a stage
        asking for the others' entries. A stage that fails costs only its own entries (logged)."""
        out: dict[int, dict[str, Any]] = {doc.id: {} for doc in docs}
        if not docs:
            return out
        for stage in self.stages:
            if stage is skip:
                continue
            try:
                entries = stage.status_entries(docs)
            except Exception:
                log.exception("filing: a stage's status entries failed",
                              extra={"stage": stage.name, "docs": [doc.id for doc in docs]})
                continue
            for doc_id, entry in entries.items():
                out.setdefault(doc_id, {}).update(entry)
        return out

    # --- later stages -------------------------------------------------------------------------------------
    def update_state(self, doc_id: int, state: str, note: str | None = None, **values: Any) -> Doc:
        """Move a document to a later public state (queued, sent, accepted ...) and rewrite its
        status file wherever it lives now; then the stages' on_state."""
        with self._status_lock:
            doc = self.journal.set_state(doc_id, state, note, **values)
            self.write_status(doc)
        for stage in self.stages:
            try:
                stage.on_state(doc)
            except Exception:
                log.exception("filing: a stage failed on a state change", extra={"stage": stage.name, "doc": doc.id})
        return doc

    def refresh(self, doc_id: int) -> None:
        """Rewrite a filed document's status file (a stage's own entry changed). Serialized
        with update_state, so the newest state wins."""
        with self._status_lock:
            doc = self.journal.get(doc_id)
            if doc is not None and doc.state not in (DocState.RECEIVED, DocState.DUPLICATE):
                self.write_status(doc)
                self.journal.record_changed(doc_id, "refresh")

    def write_status(self, doc: Doc, *, xml: bytes | None = None, dirs: set[str] | None = None,
                     group: WriteGroup | None = None) -> Path:
        extras = self.status_entries([doc])[doc.id]
        return self.out.write_status(doc, self.journal.history(doc.id), xml, extras, dirs, group)

    # --- retention (sync.retention) ------------------------------------------------------------------------
    def retain(self, docs: Sequence[Doc]) -> int:
        """Move these documents' results out of the outbox, beside their filed inputs: intent in
        the journal first (from then on every status rewrite goes to the new place), then the
        files, then done. Each document's move holds the status lock, so a rewrite never meets a
        half-moved document. Returns the files moved."""
        movable = [d for d in docs if d.step == "filed" and not d.superseded and d.dup_of is None and d.final_path]
        ids = {d.id for d in movable}
        others = [d.id for d in docs if d.id not in ids]
        if others:
            self.journal.mark_retention(others, 2)  # nothing of their own in the outbox
        if not movable:
            return 0
        self.journal.mark_retention([d.id for d in movable], 1)
        return self._finish_retention(movable)

    def resume_retention(self) -> int:
        """After a stop in the middle of a move: finish it (idempotent file by file)."""
        return self._finish_retention(self.journal.retaining())

    def _finish_retention(self, docs: Sequence[Doc]) -> int:
        moved, done = 0, []
        for doc in docs:
            with self._status_lock:
                try:
                    moved += self.out.retain_results(doc)
                except OSError as exc:  # a file locked by a reader (Windows), a folder swapped for a link
                    log.warning("filing: could not move results; retrying later",
                                extra={"doc": doc.id, "error": str(exc)})
                    continue
            done.append(doc.id)
        self.journal.mark_retention(done, 2)
        return moved

    def signed_dte(self, doc: Doc) -> SignedDte | None:
        """The SignedDte of a document with a folio, read from its NAME.xml (None if missing)."""
        data = self.out.read_result(doc, ".xml")
        if data is None:
            return None
        try:
            return SignedDte.from_xml(data)
        except (NotASignedDte, ValueError) as exc:
            log.error("filing: NAME.xml is not a signed DTE", extra={"doc": doc.id, "error": str(exc)})
            return None

    def result_path(self, doc: Doc, suffix: str) -> Path:
        return self.out.result_path(doc, suffix)

    def write_result(self, doc: Doc, suffix: str, data: bytes) -> Path:
        """A stage's own result file beside the others (NAME.pdf, NAME.receptor.json)."""
        return self.out.write_result(doc, suffix, data)

    def read_result(self, doc: Doc, suffix: str) -> bytes | None:
        """A result file's bytes (NAME.pdf for a mail), read without following links; None if absent."""
        return self.out.read_result(doc, suffix)

    def get(self, doc_id: int) -> Doc | None:
        return self.journal.get(doc_id)

    # --- read-only views ------------------------------------------------------------------------------------
    def unfinished(self) -> list[Doc]:
        return self.journal.unfinished()

    def snapshot(self) -> dict[str, Any]:
        return journal_snapshot(self.journal, self.lang)

    def queue(self) -> list[dict[str, Any]]:
        return journal_queue(self.journal)


# --- views usable without a daemon (a read-only Journal) -----------------------------------------------
def journal_snapshot(journal: Journal, lang: str = "es", last: int = 10) -> dict[str, Any]:
    """Counts by state and the last errors, from the journal alone."""
    return {
        "counts": journal.counts(),
        "steps": journal.step_counts(),
        "last_errors": [
            {"id": d.id, "source": d.rel, "state": d.state, "updated_at": d.updated_at, "errors": render_errors(d, lang)}
            for d in journal.last_errors(last)
        ],
    }


def journal_queue(journal: Journal, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    return [
        {
            "id": d.id, "source": d.rel, "station": d.station, "step": d.step, "state": d.state,
            "attempts": d.attempts, "age_s": round(now - d.created_at, 3),
        }
        for d in journal.unfinished()
    ]


# --- helpers --------------------------------------------------------------------------------------------
def choose_work_dir(inbox: Path, state_dir: Path) -> Path:
    """`<state_dir>/work` when a rename from the inbox can reach it (same file system), else
    `<inbox>/.dtesync-work` (claims must be atomic renames; the dot hides it; 0700 and reached by
    descriptor, so inbox users can neither read nor swap what is in it)."""
    cand = state_dir / "work"
    cand.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        same = os.stat(inbox).st_dev == os.stat(cand).st_dev
    except OSError:
        same = False
    if same:
        return cand
    fallback = inbox / ".dtesync-work"
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


def _intent(r: Ready) -> tuple[ClaimIntent, DteSyncError | None]:
    """The journal's claim intent for a ready file, with a safe name when the file's own name
    cannot be stored or answered (not UTF-8, or too long for the results' suffixes)."""
    name, error = safe_name(r.name)
    stem, ext = split_name(name)
    if error is not None:
        stem = name  # answered under the whole safe name: no clash with a real NAME
    return ClaimIntent(r.folder, name, stem, ext, r.station, r.size, r.mode), error


def safe_name(name: str) -> tuple[str, DteSyncError | None]:
    """`name` itself when it is valid UTF-8 of at most NAME_BYTES_MAX bytes; otherwise a
    readable stand-in (undecodable bytes as '_', cut, with a short hash of the original so two
    odd names never meet) and the error that tells the ERP why."""
    raw = os.fsencode(name)
    try:
        raw.decode("utf-8")
        bad_utf8 = False
    except UnicodeDecodeError:
        bad_utf8 = True
    if not bad_utf8 and len(raw) <= NAME_BYTES_MAX and "\n" not in name and "\r" not in name:
        return name, None
    text = raw.decode("utf-8", "replace").replace("\ufffd", "_").replace("\n", "_").replace("\r", "_")
    digest = hashlib.sha256(raw).hexdigest()[:10]
    ext = split_name(text)[1] if len(split_name(text)[1]) <= 6 else ""
    base = text[: len(text) - len(ext)]
    while len(f"{base}~{digest}{ext}".encode()) > NAME_BYTES_MAX - 40:
        base = base[:-1]
    safe = f"{base}~{digest}{ext}"
    detail = "no es UTF-8 válido" if bad_utf8 else f"tiene {len(raw)} bytes"
    return safe, DteSyncError("INPUT_NAME_INVALID", found=safe, expected=NAME_BYTES_MAX, params={"detail": detail})


def _printable(text: str) -> str:
    return os.fsencode(text).decode("utf-8", "replace")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "dispositivo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "carpeta"
    return "archivo especial"
