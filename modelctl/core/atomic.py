"""Replacing a small file (models.yaml, models.lock, a model's record) at once: old or new, never half.

The one way modelctl writes such files. The new text goes into an unnamed file in the target's
folder (O_TMPFILE), is flushed to disk, then gets a temp name and is renamed over the target at
once: a kill at any point leaves the old file and, but for the instant between those two calls,
no temp file for `git add .` to pick up. Where the file system has no O_TMPFILE, a named temp is
used and removed on every path but kill -9. A symlink is written through (the file it names is
replaced, as a team's shared models.yaml must be); a file with other hard links is refused, since
replacing it would quietly give this name a private copy.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class HardLinkedError(OSError):
    """The target has other hard links: replacing it would break them."""


def replace_text(path: Path, text: str) -> Path:
    """Replace path's content with text (UTF-8, newlines kept as given); return the file written.

    OSError on failure (ENOSPC included), with nothing left behind; HardLinkedError for a file
    with other hard links.
    """
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = target.stat()
    except FileNotFoundError:
        mode = 0o644
    else:
        if st.st_nlink > 1:
            raise HardLinkedError(
                errno.EMLINK,
                f"it has {st.st_nlink - 1} other hard link(s); replacing it would break them",
                str(path),
            )
        mode = st.st_mode & 0o7777
    data = text.encode("utf-8")
    folder = target.parent
    temp = folder / f".{target.name}.{os.getpid()}.tmp"
    fd = _open_unnamed(folder, mode)
    named = fd is None
    if fd is None:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
            if not named:  # give the unnamed file its temp name only now, just before the rename
                temp.unlink(missing_ok=True)  # left by a killed run that had our pid
                _link_unnamed(fd, temp)
                named = True
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        if named:
            temp.unlink(missing_ok=True)
        raise
    return target


def _link_unnamed(fd: int, name: Path) -> None:
    """Give the unnamed file open as fd a name: linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/<fd>
    (os.link uses plain link(2), which does not follow that link, unless a dir fd is given)."""
    procfd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(str(fd), name, src_dir_fd=procfd, follow_symlinks=True)
    finally:
        os.close(procfd)


def _open_unnamed(folder: Path, mode: int) -> int | None:
    """An unnamed file in folder (Linux O_TMPFILE), or None where the system or file system has none."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, mode)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # no O_TMPFILE there: a named temp instead (ENOENT: an old kernel's answer)
        raise
