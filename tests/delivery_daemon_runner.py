"""The daemon process of the delivery crash test: the real engine, the real daemon and the
stages the configuration asks for (printing, delivery), exactly as `dtesync run` wires them.

    python tests/delivery_daemon_runner.py CONFIG
prints READY once started; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from sync.app import build_app
    from sync.config import load_config

    config = load_config(Path(sys.argv[1]))
    assert config.delivery is not None, "the config has no [delivery]"
    app = build_app(config, watch="poll", workers=2, stable_window=0.05, empty_timeout=2.0, scan_interval=0.5,
                    poll_interval=0.1)
    from daemon_runner import serve_until_signalled

    serve_until_signalled(app.daemon)


if __name__ == "__main__":
    main()
