"""FolioStore: CAF import rules and durable, idempotent, concurrent folio allocation."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest

from sync.errors import DteSyncError
from sync.folios.store import ALLOCATED, PENDING_ANNULMENT, USED, FolioStore, StockRow
from sync.rut import Rut
from sync.sandbox.caf_factory import default_fake_sii, make_caf

REPO = Path(__file__).resolve().parents[1]
RUT = Rut.parse("76192083-9")
TODAY = date(2024, 3, 1)
TRUSTED = default_fake_sii().trusted_keys


def caf(tipo: int = 33, desde: int = 1, hasta: int = 100, fa: date = date(2024, 2, 1), rut: Rut = RUT) -> bytes:
    return make_caf(rut, "EMPRESA DEMO SPA", tipo, desde, hasta, fa)


@pytest.fixture
def store(tmp_path):
    with FolioStore(tmp_path / "folios.db") as s:
        yield s


def load(store: FolioStore, data: bytes, now: date = TODAY):
    return store.import_caf(data, RUT, now, trusted_keys=TRUSTED)


def code_of(fn, *args, **kw) -> str:
    with pytest.raises(DteSyncError) as info:
        fn(*args, **kw)
    return info.value.code


# --- import -------------------------------------------------------------------------------------


def test_import_returns_the_caf_and_lists_it(store):
    imported = load(store, caf())
    assert (imported.tipo_dte, imported.desde, imported.hasta) == (33, 1, 100)
    assert store.list_cafs() == [imported]


def test_reimporting_the_identical_caf_is_a_noop(store):
    data = caf()
    load(store, data)
    load(store, data)
    load(store, data.replace(b"\n  ", b"\n    "))  # same CAF, other indentation
    assert len(store.list_cafs()) == 1


def test_caf_of_another_company_is_rejected(store):
    assert code_of(load, store, caf(rut=Rut.parse("96670340-7"))) == "CAF_OTHER_COMPANY"


def test_overlapping_range_is_rejected(store):
    load(store, caf(desde=1, hasta=100))
    assert code_of(load, store, caf(desde=100, hasta=200, fa=date(2024, 2, 2))) == "CAF_OVERLAP"


def test_same_range_of_another_type_does_not_overlap(store):
    load(store, caf(tipo=33))
    load(store, caf(tipo=61))
    assert len(store.list_cafs()) == 2


def test_expired_caf_is_rejected_on_import(store):
    assert code_of(load, store, caf(fa=date(2023, 8, 1)), date(2024, 2, 1)) == "CAF_EXPIRED"


def test_caf_with_invalid_frma_is_rejected(store):
    tampered = caf().replace(b"<H>100</H>", b"<H>900</H>")
    assert code_of(load, store, tampered) == "CAF_SIGNATURE_INVALID"


def test_malformed_caf_is_rejected(store):
    assert code_of(load, store, b"<AUTORIZACION/>") == "CAF_MALFORMED"


def test_caf_with_unknown_idk_is_accepted_when_no_key_is_given(store):
    store.import_caf(caf(), RUT, TODAY)  # IDK 666 without trusted_keys: not verifiable, not refused
    assert len(store.list_cafs()) == 1


# --- allocate -----------------------------------------------------------------------------------


def test_allocate_hands_out_the_lowest_folio_first(store):
    load(store, caf(desde=51, hasta=100))
    assert [store.allocate(33, TODAY, f"d{i}")[0] for i in range(3)] == [51, 52, 53]


def test_allocate_returns_the_caf_that_authorizes_the_folio(store):
    load(store, caf())
    folio, found = store.allocate(33, TODAY, "d1")
    assert found.contains(folio) and found.private_key is not None


def test_same_doc_key_gets_the_same_folio(store):
    load(store, caf())
    first = store.allocate(33, TODAY, "F123.txt:sha256")[0]
    store.allocate(33, TODAY, "other")
    assert store.allocate(33, TODAY, "F123.txt:sha256")[0] == first
    assert store.folio_of(33, "F123.txt:sha256") == first


def test_oldest_caf_is_used_before_a_newer_one(store):
    load(store, caf(desde=101, hasta=102, fa=date(2024, 2, 20)))
    load(store, caf(desde=1, hasta=2, fa=date(2024, 2, 1)))
    assert [store.allocate(33, TODAY, f"d{i}")[0] for i in range(4)] == [1, 2, 101, 102]


def test_expired_caf_is_skipped_for_a_live_one(store):
    load(store, caf(desde=1, hasta=10, fa=date(2024, 1, 1)))
    load(store, caf(desde=11, hasta=20, fa=date(2024, 3, 1)))
    assert store.allocate(33, date(2024, 7, 1), "d")[0] == 11


def test_all_cafs_expired_raises_caf_expired(store):
    load(store, caf(fa=date(2024, 1, 1)))
    with pytest.raises(DteSyncError) as info:
        store.allocate(33, date(2024, 7, 1), "d")
    assert info.value.code == "CAF_EXPIRED" and info.value.params["expired_on"] == "2024-07-01"


def test_warm_up_parses_only_the_cafs_that_still_have_folios_to_give(tmp_path):
    july = date(2024, 7, 1)
    with FolioStore(tmp_path / "folios.db") as first:
        load(first, caf(desde=1, hasta=10, fa=date(2024, 1, 1)))  # expired by July
        load(first, caf(desde=11, hasta=12, fa=date(2024, 3, 1)))  # used up below
        load(first, caf(desde=13, hasta=20, fa=date(2024, 3, 1)))
        assert [first.allocate(33, july, k)[0] for k in ("a", "b")] == [11, 12]
    with FolioStore(tmp_path / "folios.db") as fresh:  # a new process: nothing parsed yet
        fresh.warm_up(july)
        assert sorted(c.desde for c in fresh._cafs.values()) == [13]


def test_boleta_cafs_do_not_expire(store):
    load(store, caf(tipo=39, fa=date(2024, 1, 1)))
    assert store.allocate(39, date(2030, 1, 1), "d")[0] == 1


def test_no_caf_for_the_type_raises_caf_missing(store):
    load(store, caf(tipo=33))
    assert code_of(store.allocate, 61, TODAY, "d") == "CAF_MISSING"


def test_exhausted_cafs_raise_folios_exhausted(store):
    load(store, caf(desde=1, hasta=2))
    store.allocate(33, TODAY, "a")
    store.allocate(33, TODAY, "b")
    assert code_of(store.allocate, 33, TODAY, "c") == "FOLIOS_EXHAUSTED"


def test_allocation_survives_reopening_the_store(tmp_path):
    path = tmp_path / "folios.db"
    with FolioStore(path) as s:
        load(s, caf())
        assert s.allocate(33, TODAY, "a")[0] == 1
    with FolioStore(path) as s:
        assert s.allocate(33, TODAY, "a")[0] == 1
        assert s.allocate(33, TODAY, "b")[0] == 2


_CRASH = """
import os, sys
from datetime import date
from sync.folios.store import FolioStore
folio, _ = FolioStore(sys.argv[1]).allocate(33, date(2024, 3, 1), "crashing-doc")
print(folio, flush=True)
os._exit(9)  # no close, no cleanup: a power cut right after allocation
"""


def test_folio_allocated_before_a_crash_is_given_back_to_the_same_document(tmp_path):
    path = tmp_path / "folios.db"
    with FolioStore(path) as s:
        load(s, caf())
        s.allocate(33, TODAY, "earlier")
    out = subprocess.run([sys.executable, "-c", _CRASH, str(path)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 9, out.stderr
    with FolioStore(path) as s:
        assert s.allocate(33, TODAY, "crashing-doc")[0] == int(out.stdout) == 2
        assert s.allocate(33, TODAY, "next-doc")[0] == 3


def test_threads_allocate_2000_folios_without_duplicates_or_gaps(store):
    load(store, caf(desde=1, hasta=2000))
    with ThreadPoolExecutor(max_workers=8) as pool:
        folios = list(pool.map(lambda i: store.allocate(33, TODAY, f"t{i}")[0], range(2000)))
    assert sorted(folios) == list(range(1, 2001))


_WORKER = """
import sys
from datetime import date
from sync.folios.store import FolioStore
store = FolioStore(sys.argv[1])
tag, n = sys.argv[2], int(sys.argv[3])
print(" ".join(str(store.allocate(33, date(2024, 3, 1), f"{tag}-{i}")[0]) for i in range(n)))
"""


def test_two_processes_allocate_2000_folios_without_duplicates_or_gaps(tmp_path):
    path = tmp_path / "folios.db"
    with FolioStore(path) as s:
        load(s, caf(desde=1, hasta=2000))
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path), tag, "1000"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("p1", "p2")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    per_process = [[int(x) for x in out.split()] for out, _ in outputs]
    assert all(len(folios) == 1000 for folios in per_process)
    assert sorted(per_process[0] + per_process[1]) == list(range(1, 2001))


# --- claim (folio given by the input) ---------------------------------------------------------------


def test_claim_takes_a_folio_inside_a_loaded_caf(store):
    load(store, caf())
    assert store.claim(33, 50, "doc").contains(50)
    assert store.state_of(33, 50) == ALLOCATED


def test_claim_outside_every_caf_raises_folio_not_in_caf(store):
    load(store, caf())
    assert code_of(store.claim, 33, 101, "doc") == "FOLIO_NOT_IN_CAF"


def test_claim_of_a_taken_folio_raises_folio_used(store):
    load(store, caf())
    store.claim(33, 50, "doc")
    assert code_of(store.claim, 33, 50, "another-doc") == "FOLIO_USED"


def test_claim_again_by_the_same_document_is_idempotent(store):
    load(store, caf())
    store.claim(33, 50, "doc")
    assert store.claim(33, 50, "doc").contains(50)


def test_claim_in_an_expired_caf_raises_caf_expired(store):
    load(store, caf(fa=date(2024, 1, 1)))
    assert code_of(store.claim, 33, 5, "doc", now=date(2024, 8, 1)) == "CAF_EXPIRED"


def test_allocate_skips_folios_claimed_by_input(store):
    load(store, caf())
    store.claim(33, 1, "x")
    store.claim(33, 2, "y")
    store.claim(33, 4, "z")
    assert [store.allocate(33, TODAY, f"d{i}")[0] for i in range(2)] == [3, 5]


# --- lifecycle -----------------------------------------------------------------------------------------


def test_mark_used_records_the_signed_folio(store):
    load(store, caf())
    folio, _ = store.allocate(33, TODAY, "d")
    store.mark_used(33, folio)
    store.mark_used(33, folio)  # idempotent after a restart
    assert store.state_of(33, folio) == USED


def test_mark_used_of_a_folio_never_taken_is_an_internal_error(store):
    load(store, caf())
    assert code_of(store.mark_used, 33, 7) == "INTERNAL"


def test_mark_used_of_a_released_folio_is_an_internal_error_and_keeps_it_pending(store):
    load(store, caf())
    folio, _ = store.allocate(33, TODAY, "doc")
    store.release_for_annulment(33, folio, "error")
    assert code_of(store.mark_used, 33, folio) == "INTERNAL"
    assert store.state_of(33, folio) == PENDING_ANNULMENT


def test_released_folio_is_pending_annulment_and_never_reused(store):
    load(store, caf())
    folio, _ = store.allocate(33, TODAY, "doc")
    store.release_for_annulment(33, folio, "SCHEMA_INVALID", now=TODAY)
    [pending] = store.pending_annulment()
    assert (pending.tipo_dte, pending.folio, pending.doc_key, pending.reason) == (33, folio, "doc", "SCHEMA_INVALID")
    assert store.state_of(33, folio) == PENDING_ANNULMENT
    assert store.allocate(33, TODAY, "other")[0] != folio


def test_document_retried_after_release_gets_a_new_folio(store):
    load(store, caf())
    folio, _ = store.allocate(33, TODAY, "doc")
    store.release_for_annulment(33, folio, "error")
    assert store.allocate(33, TODAY, "doc")[0] == folio + 1


def test_mark_annulled_removes_from_pending(store):
    load(store, caf())
    folio, _ = store.allocate(33, TODAY, "doc")
    store.release_for_annulment(33, folio, "error")
    store.mark_annulled(33, folio)
    assert store.pending_annulment() == []


def test_stock_counts_free_folios_of_live_cafs(store):
    load(store, caf(tipo=33, desde=1, hasta=10, fa=date(2024, 2, 1)))
    load(store, caf(tipo=33, desde=11, hasta=20, fa=date(2024, 2, 10)))
    load(store, caf(tipo=39, desde=1, hasta=5))
    store.allocate(33, TODAY, "a")
    store.claim(33, 15, "b")
    assert store.stock(TODAY) == [
        StockRow(33, 18, 2, date(2024, 8, 1)),
        StockRow(39, 5, 1, None),
    ]


def test_stock_of_expired_type_is_zero(store):
    load(store, caf(fa=date(2024, 1, 1)))
    assert store.stock(date(2024, 7, 1)) == [StockRow(33, 0, None, None)]


def test_caf_for_finds_the_authorizing_caf(store):
    load(store, caf(desde=1, hasta=10))
    second = load(store, caf(desde=11, hasta=20, fa=date(2024, 2, 2)))
    assert store.caf_for(33, 15) == second
    assert code_of(store.caf_for, 33, 21) == "FOLIO_NOT_IN_CAF"


# --- batches ------------------------------------------------------------------------------------


def test_allocate_many_gives_each_document_its_folio_in_order_across_cafs(store):
    load(store, caf(desde=1, hasta=3))
    load(store, caf(desde=10, hasta=20, fa=date(2024, 2, 2)))
    taken = store.allocate_many([(33, f"doc-{i}") for i in range(5)], TODAY)
    assert [folio for folio, _ in taken] == [1, 2, 3, 10, 11]
    assert [c.desde for _, c in taken] == [1, 1, 1, 10, 10]
    assert store.allocate(33, TODAY, "next") == (12, taken[3][1])


def test_allocate_many_reports_a_missing_caf_for_one_document_and_serves_the_others(store):
    load(store, caf(tipo=33))
    first, missing, second = store.allocate_many([(33, "a"), (61, "b"), (33, "c")], TODAY)
    assert (first[0], second[0]) == (1, 2)
    assert isinstance(missing, DteSyncError) and missing.code == "CAF_MISSING"
    assert store.folio_of(61, "b") is None


def test_allocate_many_reports_exhaustion_only_for_the_documents_past_the_end(store):
    load(store, caf(desde=1, hasta=2))
    results = store.allocate_many([(33, "a"), (33, "b"), (33, "c")], TODAY)
    assert [r[0] for r in results[:2]] == [1, 2]
    assert results[2].code == "FOLIOS_EXHAUSTED"


def test_allocate_many_gives_a_repeated_doc_key_its_one_folio(store):
    load(store, caf())
    store.allocate(33, TODAY, "earlier")
    taken = store.allocate_many([(33, "x"), (33, "earlier"), (33, "x")], TODAY)
    assert [folio for folio, _ in taken] == [2, 1, 2]


def test_allocate_many_is_durable_when_it_returns(tmp_path):
    path = tmp_path / "folios.db"
    with FolioStore(path) as s:
        load(s, caf())
        s.allocate_many([(33, "a"), (33, "b")], TODAY)
    with FolioStore(path) as s:
        assert (s.folio_of(33, "a"), s.folio_of(33, "b")) == (1, 2)
        assert s.state_of(33, 2) == ALLOCATED
        assert s.allocate(33, TODAY, "c")[0] == 3


def test_mark_used_many_reports_only_the_folio_that_was_not_allocated(store):
    load(store, caf())
    store.allocate_many([(33, "a"), (33, "b")], TODAY)
    problems = store.mark_used_many([(33, 1), (33, 50), (33, 2)])
    assert problems[0] is None and problems[2] is None
    assert problems[1].code == "INTERNAL"
    assert (store.state_of(33, 1), store.state_of(33, 2), store.state_of(33, 50)) == (USED, USED, None)
