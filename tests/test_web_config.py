"""[web], [alerts] and [retention] are checked when the configuration is read: a panel that would
be open to the network without TLS or without a password never starts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sync.config import parse_config
from sync.errors import DteSyncError
from sync.web.settings import DEFAULT_LISTEN, parse_web, split_listen

BASE = Path("/etc/dtesync")


def web(**section) -> object:
    return parse_web({"web": section}, BASE)


def refused(key: str, **section) -> DteSyncError:
    with pytest.raises(DteSyncError) as exc:
        web(**section)
    assert exc.value.code == "CONFIG_INVALID" and exc.value.field == f"web.{key}"
    return exc.value


def test_default_is_loopback_on_8765_and_reading_needs_no_password():
    w = parse_web({}, BASE)
    assert w.listen == DEFAULT_LISTEN == "127.0.0.1:8765" and w.loopback and w.enabled and w.password is None


def test_an_empty_listen_turns_the_panel_off():
    assert web(listen="").enabled is False


@pytest.mark.parametrize("listen", ["0.0.0.0:8765", "192.168.1.10:8765", "panel.example.cl:443", "[::]:8765"])
def test_listening_beyond_loopback_without_tls_is_refused(listen):
    err = refused("listen", listen=listen, password={"env": "P"})
    assert "tls_cert" in err.message("es")


def test_beyond_loopback_with_tls_or_allow_remote_needs_a_password():
    refused("password", listen="0.0.0.0:8765", tls_cert="c.pem", tls_key="k.pem")
    w = web(listen="0.0.0.0:8765", tls_cert="c.pem", tls_key="k.pem", password={"file": "panel.pw"})
    assert w.tls and w.tls_cert == BASE / "c.pem" and w.password.file == BASE / "panel.pw"
    assert web(listen="0.0.0.0:8765", allow_remote=True, password={"env": "P"}).tls is False


@pytest.mark.parametrize("listen", ["[::1]:8765", "localhost:9000", "127.0.0.2:1"])
def test_loopback_in_any_spelling(listen):
    assert web(listen=listen).loopback


def test_the_password_is_a_secret_reference_never_a_value():
    refused("password", password="hunter2")
    refused("password", password={"env": "A", "file": "b"})


def test_bad_values_name_their_key():
    refused("listen", listen="8765")
    refused("listen", listen="127.0.0.1:99999")
    refused("tls_key", tls_cert="c.pem")
    refused("metrics_every", metrics_every=0)
    refused("colour", colour="blue")


def test_split_listen():
    assert split_listen("[::1]:80") == ("::1", 80) and split_listen("127.0.0.1:0") == ("127.0.0.1", 0)


def test_the_example_config_parses_with_every_new_section():
    example = Path(__file__).resolve().parents[1] / "config" / "dtesync.example.toml"
    data = tomllib.loads(example.read_text("utf-8"))
    config = parse_config(data, base=example.parent)
    assert config.web.listen == DEFAULT_LISTEN and config.retention.outbox_days == 60
    assert config.alerts.queue_stuck_after == 1800 and config.alerts.webhook is None


def test_alert_destinations_are_checked():
    base = tomllib.loads((Path(__file__).resolve().parents[1] / "config" / "dtesync.example.toml").read_text("utf-8"))
    base["alerts"] = {"email_to": "admin@example.cl", "webhook": "https://hooks.example.cl/dtesync"}
    c = parse_config(base, base=BASE)
    assert c.alerts.email_to == ["admin@example.cl"] and c.alerts.webhook.startswith("https://")
    base["alerts"] = {"webhook": {"url": "https://hooks.example.cl/t"}}  # the table form
    assert parse_config(base, base=BASE).alerts.webhook == "https://hooks.example.cl/t"
    for bad in ({"email_to": ["not an address"]}, {"webhook": "ftp://x"}, {"webhook": {"uri": "https://x"}},
                {"queue_stuck_after": 0}):
        base["alerts"] = bad
        with pytest.raises(DteSyncError) as exc:
            parse_config(base, base=BASE)
        assert exc.value.field.startswith("alerts.")
