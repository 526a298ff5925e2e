"""Is a path on a network share? (Durable, link-safe file I/O lives in sync.fileio.)

Network shares matter twice: SQLite's WAL must never live on one (sqlite.org/wal.html),
and inotify does not see writes made by other machines on one, so `watch = "auto"` polls
there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "9p", "fuse.sshfs", "afs", "ncpfs", "davfs", "fuse.davfs2"}
)


def _unescape_mount(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def fs_type_from_mounts(path: str, mounts_text: str) -> str | None:
    """The fs type of the longest mount point containing `path` (pure, for tests)."""
    best, best_type = "", None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = _unescape_mount(parts[1])
        inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best):
            best, best_type = mnt, parts[2]
    return best_type


def network_fs(path: str | Path) -> str | None:
    """A description of the network file system holding `path`, or None when local."""
    p = str(path)
    if sys.platform == "win32":
        return _windows_network(p)
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None  # not Linux: no cheap reliable answer; assume local
    real = os.path.realpath(_existing_ancestor(p))
    fstype = fs_type_from_mounts(real, mounts)
    if fstype and (fstype in NETWORK_FS_TYPES or fstype.startswith(("smb", "nfs"))):
        return fstype
    return None


def _existing_ancestor(p: str) -> str:
    p = os.path.abspath(p)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return p


def _windows_network(p: str) -> str | None:
    if p.startswith(("\\\\", "//")):
        return "UNC path"
    try:
        import ctypes

        drive = os.path.splitdrive(os.path.abspath(p))[0] + "\\"
        if ctypes.windll.kernel32.GetDriveTypeW(drive) == 4:  # type: ignore[attr-defined]  # Windows only; DRIVE_REMOTE
            return f"network drive {drive}"
    except (OSError, AttributeError):
        pass
    return None
