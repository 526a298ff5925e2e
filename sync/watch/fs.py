"""File-system facts the daemon needs: is a path on a network share, and durable moves.

Network shares matter twice: SQLite's WAL must never live on one (sqlite.org/wal.html),
and inotify does not see writes made by other machines on one, so `watch = "auto"` polls
there. Moves matter because the claim, the archive and the outbox all rely on `rename`
being atomic, which only holds inside one file system; across file systems we copy,
fsync, rename and only then unlink the source.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import time
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
        if ctypes.windll.kernel32.GetDriveTypeW(drive) == 4:  # DRIVE_REMOTE
            return f"network drive {drive}"
    except (OSError, AttributeError):
        pass
    return None


def fsync_dir(path: str | Path) -> None:
    """Make a rename in `path` durable (POSIX); a no-op where directories cannot be opened."""
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (e.g. certain FUSE/SMB) refuse fsync on directories
    finally:
        os.close(fd)


def replace_retrying(src: str | Path, dst: str | Path, attempts: int = 20) -> None:
    """os.replace, retried while Windows reports the target or source held open."""
    delay = 0.01
    for i in range(attempts):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if sys.platform != "win32" or i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def durable_move(src: Path, dst: Path) -> None:
    """Move a file (or a symlink itself) to `dst`, durable and never half-done at `dst`.

    Idempotent for crash recovery: when `src` is gone and `dst` exists, the move happened.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(src):
        if os.path.lexists(dst):
            return
        raise FileNotFoundError(errno.ENOENT, "nothing to move", str(src))
    try:
        replace_retrying(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(src, dst)
        os.unlink(src)
        fsync_dir(src.parent)
    fsync_dir(dst.parent)


def _copy_across(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name[:200]}.{os.getpid()}.moving")
    if os.path.islink(src):
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.readlink(src), tmp)
    else:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, tmp)
    replace_retrying(tmp, dst)
