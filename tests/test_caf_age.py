"""CAFs past the SII's age limit with folios unused show in `dtesync check` and in the alerts.

Res. Ex. SII 58/2017: a CAF authorized since 2018-07-01 is valid for 6 months from its
authorization date (FA); its folios never used can no longer be issued, and are annulled at
sii.cl. The folio store stops counting them in its stock the day the CAF lapses; these tests
check that they do not silently disappear: the store lists them (`expired_unused`), `dtesync
check` warns with the fix, and the alerts hub hears of them (for `caf_expiry_days` after the
date, like the warning before it).
"""

from __future__ import annotations

import contextlib
import io
from datetime import date, datetime, timedelta, timezone

import pytest

from sync.cli import main
from sync.config import AlertsConfig, load_config
from sync.folios.caf import add_months
from sync.folios.store import ExpiredCaf, FolioStore
from sync.reports import current_alerts, stock_alerts
from sync.runtime import open_folio_store
from sync.sandbox.build import DEMO_NAME, DEMO_RUT, create_sandbox
from sync.sandbox.caf_factory import default_fake_sii

TODAY = date.today()
AUTHORIZED = TODAY - timedelta(days=200)  # more than 6 months ago
LAPSED_ON = add_months(AUTHORIZED, 6)


def aged_caf(store: FolioStore, tipo: int = 33, desde: int = 1000, hasta: int = 1099, used: int = 3) -> None:
    """A CAF imported while it was valid, `used` folios taken then; it has lapsed since."""
    fake = default_fake_sii()
    then = AUTHORIZED + timedelta(days=10)
    store.import_caf(fake.make_caf(DEMO_RUT, DEMO_NAME, tipo, desde, hasta, AUTHORIZED), DEMO_RUT, then,
                     trusted_keys=fake.trusted_keys)
    for i in range(used):
        store.claim(tipo, desde + i, f"aged:{tipo}:{i}", now=then)


def test_the_store_lists_a_lapsed_caf_with_its_unused_folios(tmp_path):
    store = FolioStore(tmp_path / "folios.sqlite")
    aged_caf(store)
    assert store.expired_unused(LAPSED_ON - timedelta(days=1)) == []  # the day before: still valid
    assert store.expired_unused(TODAY) == [ExpiredCaf(33, 1000, 1099, LAPSED_ON, 97)]
    assert [row.tipo_dte for row in store.stock(TODAY) if row.available] == []  # no longer in the stock


def test_a_lapsed_caf_whose_folios_were_all_used_is_not_reported(tmp_path):
    store = FolioStore(tmp_path / "folios.sqlite")
    aged_caf(store, desde=1, hasta=3, used=3)
    assert store.expired_unused(TODAY) == []


def test_the_alert_names_the_caf_and_its_unused_folios_for_a_while():
    lapsed = ExpiredCaf(33, 1000, 1099, TODAY - timedelta(days=5), 97)
    s = AlertsConfig(caf_stock_min=0, caf_expiry_days=30, cert_expiry_days=30)
    far = datetime(2999, 1, 1, tzinfo=timezone.utc)
    (alert,) = stock_alerts([], far, TODAY, s, [lapsed])
    assert (alert.code, alert.level, alert.key) == ("CAF_EXPIRED_UNUSED", "WARNING", "caf_lapsed:33:1000")
    assert alert.message("es") == (
        f"El CAF de TipoDTE 33 (folios 1000-1099) venció el {lapsed.expires_on.isoformat()} (6 meses desde su "
        "autorización, Res. Ex. SII 58/2017) con 97 folios sin usar: ya no se pueden emitir; anúlelos en sii.cl.")
    old = lapsed._replace(expires_on=TODAY - timedelta(days=31))
    assert stock_alerts([], far, TODAY, s, [old]) == []  # `dtesync check` keeps showing it


@pytest.fixture
def site(tmp_path):
    sandbox = create_sandbox(tmp_path / "sb", folios_per_type=50)
    config = load_config(sandbox.config_path)
    with open_folio_store(config) as store:
        aged_caf(store)
    return config


def test_check_warns_of_the_lapsed_caf_with_the_fix(site):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", "--config", str(site.path)])
    text = out.getvalue()
    assert code == 0  # a warning: the other CAFs still issue
    line = next(t for t in text.splitlines() if "1000-1099" in t)
    assert "CAF TipoDTE 33" in line and f"venció el {LAPSED_ON}" in line and "97 folios sin usar" in line
    assert "anúlelos en sii.cl" in text.split(line, 1)[1].splitlines()[1]


def test_the_daemons_alert_job_raises_it(site):
    assert 0 < (TODAY - LAPSED_ON).days <= site.alerts.caf_expiry_days  # 200 days after FA: lapsed 16 to 19 days ago
    found = {a.code: a for a in current_alerts(site, TODAY)}
    assert found["CAF_EXPIRED_UNUSED"].params == {"tipo_dte": 33, "desde": 1000, "hasta": 1099,
                                                  "expired_on": LAPSED_ON.isoformat(), "unused": 97}
