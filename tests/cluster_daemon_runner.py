"""The daemon process of a site in the cluster crash test: the real engine (its folio store in
cluster mode) and the cluster stage built from the config's [cluster] section, as `dtesync run`
wires them (other stages left out: they have their own tests).

    python tests/cluster_daemon_runner.py CONFIG
prints READY once started; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from sync.app import build_app
    from sync.cluster.stage import build_cluster
    from sync.config import load_config
    from sync.runtime import open_engine

    config = load_config(Path(sys.argv[1]))
    engine = open_engine(config)
    cluster = build_cluster(config, engine)
    assert cluster is not None, "the config has no [cluster]"
    daemon = build_app(config, engine=engine, stages=[cluster], watch="poll", workers=2, empty_timeout=2.0,
                       scan_interval=0.5, poll_interval=0.1).daemon
    from daemon_runner import serve_until_signalled

    serve_until_signalled(daemon)


if __name__ == "__main__":
    main()
