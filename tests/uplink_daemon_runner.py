"""The daemon process of the uplink crash test: the real engine, the real daemon and the uplink
built from the config's [uplink] section, exactly as `dtesync run` wires them.

    python tests/uplink_daemon_runner.py CONFIG
prints READY once started; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from sync.app import build_app
    from sync.config import load_config
    from sync.runtime import open_engine
    from sync.uplink.build import build_uplink

    config = load_config(Path(sys.argv[1]))
    engine = open_engine(config)
    uplink = build_uplink(config, engine.certificate)
    assert uplink is not None, "the config has no [uplink]"
    daemon = build_app(config, engine=engine, stages=[uplink], watch="poll", workers=2, empty_timeout=2.0,
                       scan_interval=0.5, poll_interval=0.1).daemon
    from daemon_runner import serve_until_signalled

    serve_until_signalled(daemon)


if __name__ == "__main__":
    main()
