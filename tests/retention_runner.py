"""The process the retention crash test kills: open the Filing of ROOT (no daemon, no
inbox), and move every result older than a day, as the daemon's retention stage does.

    python tests/retention_runner.py ROOT
prints READY before it starts moving and DONE when nothing is left.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from sync.alerts import Alerts
    from sync.filing import Filing, Folders
    from sync.retention import RetentionConfig, RetentionStage

    root = Path(sys.argv[1])
    filing = Filing(Folders(inbox=root / "inbox", outbox=root / "outbox", archive=root / "archive",
                            rejected=root / "rejected", state=root / "state"))
    filing.open()
    stage = RetentionStage(RetentionConfig(outbox_days=1, batch=50), clock=lambda: time.time() + 2 * 86400)
    stage.bind(filing, Alerts([]))
    print("READY", flush=True)
    stage.run_once()
    filing.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
