"""Copy printers/*.toml (the source of truth) into sync/data/printers/ (shipped with the package).

Run after editing a profile: `python tools/sync_printer_profiles.py`. tests/test_printing_profiles.py
fails while the two folders differ.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC, DST = ROOT / "printers", ROOT / "sync" / "data" / "printers"


def main() -> None:
    DST.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in SRC.glob("*.toml")}
    for stale in DST.glob("*.toml"):
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        shutil.copyfile(SRC / name, DST / name)
        print(f"{SRC / name} -> {DST / name}")


if __name__ == "__main__":
    main()
