"""The daemon process of the uplink crash test: the real engine, the real daemon and the uplink
built from the config's [uplink] section, exactly as `dtesync run` wires them.

    python tests/uplink_daemon_runner.py CONFIG
prints READY once started; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from sync.config import load_config
    from sync.daemon import Daemon, install_signal_handlers
    from sync.runtime import open_engine
    from sync.uplink.build import attach

    config = load_config(Path(sys.argv[1]))
    engine = open_engine(config)
    daemon = Daemon.from_config(config, engine, watch="poll", workers=2, empty_timeout=2.0, scan_interval=0.5,
                                poll_interval=0.1)
    assert attach(daemon, config, engine) is not None, "the config has no [uplink]"
    stop = threading.Event()
    install_signal_handlers(stop)
    daemon.start()
    print("READY", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
