"""Entry point of the frozen program (PyInstaller): the same `main` as the console script.

On Windows the installed service runs this program as `dtesync.exe service run --config ...`
(see sync/service/windows.py), so there is no special case here.
"""

from sync.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
