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
    from sync.config import load_config
    from sync.daemon import Daemon
    from sync.runtime import open_engine
    from sync.uplink.build import attach

    config = load_config(Path(sys.argv[1]))
    engine = open_engine(config)
    daemon = Daemon.from_config(config, engine, watch="poll", workers=2, empty_timeout=2.0, scan_interval=0.5,
                                poll_interval=0.1)
    assert attach(daemon, config, engine) is not None, "the config has no [uplink]"
    from daemon_runner import serve_until_signalled

    serve_until_signalled(daemon)


if __name__ == "__main__":
    main()
