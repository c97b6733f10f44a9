"""Bytes already on the machine: a file found in the Hugging Face cache or another root is not fetched.

Where a file's bytes may already be (`find_sources`, then `Sources.candidate`):
- another model folder in the storage roots whose record lists the same content (size and hash):
  vouched for by that record's check when the check is current, else hashed;
- the Hugging Face cache, which names each blob by its hash (`models--org--name/blobs/<sha256>`
  for LFS files, the git blob sha1 for the others): this repo's blobs first, then any repo's;
- this model's own folder in another root that has no record (hashed).

`reuse_files` clones each file (copy-on-write, where the file system can), else hard-links it
(same filesystem), else copies it, into a temp name in the model's `.modelctl/partials/`, hashes
what is not vouched for (every core, `hashing.hash_files`) and moves the good ones into place with
os.replace. A file whose bytes do not match is never published (its source is left untouched) and
is fetched instead. Nothing modelctl does writes into a published file in place; a program that
edits a hard-linked file changes every copy, so verify names the other copies and ensure repairs
them together. A link is only ever made to a file whose real path (symlinks resolved) is inside a
storage root or the Hugging Face cache.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelctl.core.hashing import GIT_SHA1, Hasher, HashTask, hash_files
from modelctl.core.record import META_DIR, Checked, FileResult, RepoFile, read_record, trusted_record
from modelctl.store.storage import PARTIALS_DIR, READ_ONLY_ROOTS, forget_partials, partial_path

REUSE = "reuse"
HF_CACHE = "the HF cache"
# The temp name of a file being linked or copied in: beside the engine's partials, never one of
# them (a resumable partial of the same file stays as it is until the reuse is published).
REUSE_SUFFIX = ".reuse.partial"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A file on this machine that should hold the bytes of one file of the model."""

    path: Path  # its real path (symlinks resolved): inside a root or the HF cache
    where: str  # "the HF cache", "the shared root", ...: for messages
    is_link: bool = False  # on the target's filesystem: hard-linked, else copied (False: not looked at yet)
    checked: Checked | None = None  # the record's current check that vouches for it (None: hash it)

    def describe(self) -> str:
        how = "hard link" if self.is_link else "copy"
        return f"{how} from {self.where}: {self.path}"


@dataclass(frozen=True)
class Sources:
    """Where bytes may already be, for one model folder (see the module's docstring)."""

    folder: Path  # the model folder being filled
    device: int  # its filesystem (of its nearest existing parent)
    allowed: tuple[Path, ...]  # real paths of the roots and the HF cache: nothing outside is linked
    # (size, algo, hex) → the files other records list with that content, as listed (unchecked)
    listed: Mapping[tuple[int, str, str], tuple[Candidate, ...]]
    hf_repos: tuple[Path, ...]  # HF cache repo folders, this repo's first
    unrecorded: tuple[tuple[Path, str], ...]  # this model's folders without a record, and their root

    def candidate(self, remote: RepoFile) -> Candidate | None:
        """The best place to take remote's bytes from: a link before a copy; vouched, then the HF
        cache, then what must be hashed. None when nothing on the machine may hold them."""
        algo, expected = remote.expected
        if not expected:
            return None  # a URL file without a pinned sha256: nothing to check a reuse against
        found: list[tuple[int, Candidate]] = []
        for entry in self.listed.get((remote.size, algo, expected), ()):
            candidate = self._check(entry.path, remote, entry.where, entry.checked, algo)
            if candidate is not None:
                found.append((0 if candidate.checked is not None else 2, candidate))
        for repo in self.hf_repos:
            candidate = self._check(repo / "blobs" / expected, remote, HF_CACHE, None, algo)
            if candidate is not None:
                found.append((1, candidate))
                break
        for folder, where in self.unrecorded:
            candidate = self._check(folder / remote.path, remote, where, None, algo)
            if candidate is not None:
                found.append((3, candidate))
        if not found:
            return None
        return min(found, key=lambda item: (not item[1].is_link, item[0]))[1]

    def _check(
        self, path: Path, remote: RepoFile, where: str, checked: Checked | None, algo: str
    ) -> Candidate | None:
        """A Candidate when path is a regular file of the right size inside the allowed places."""
        try:
            real = Path(os.path.realpath(path))
            st = real.stat()
        except (OSError, RuntimeError):
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size != remote.size:
            return None
        if not any(real.is_relative_to(place) for place in self.allowed):
            log.info("not reusing %s: its real path %s is outside the roots and the HF cache", path, real)
            return None
        if real.is_relative_to(os.path.realpath(self.folder)):
            return None  # the target's own file (the bad one, or a quarantined copy)
        if checked is not None and not (checked.is_current(st) and algo in checked.digests):
            checked = None  # changed since that check, or checked for other digests: hash it
        return Candidate(real, where, st.st_dev == self.device, checked)


def find_sources(
    roots: Iterable[tuple[str, Path]],
    repo_id: str,
    folder: Path,
    same_model: Iterable[tuple[str, Path]] = (),
    hf_cache: Path | None = None,
) -> Sources:
    """Look around the machine for the model folder `folder` (no hashing: stats and records).

    roots: (name, path) of every storage root; same_model: (root name, folder) of this model in
    the other roots; hf_cache: the Hugging Face cache (None: none).
    """
    allowed: list[Path] = []
    listed: dict[tuple[int, str, str], list[Candidate]] = {}
    target = os.path.realpath(folder)
    for name, root in roots:
        if not root.is_dir():
            continue
        allowed.append(Path(os.path.realpath(root)))
        try:
            children = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            continue
        for child in children:
            if child.name.startswith(".") or not child.is_dir() or os.path.realpath(child.path) == target:
                continue
            # Another machine's checks (a shared store) are claims: those files are hashed.
            record = trusted_record(Path(child.path), is_read_only=name in READ_ONLY_ROOTS)
            for f in record.files if record is not None else ():
                algo, expected = f.expected
                if expected:
                    entry = Candidate(Path(child.path) / f.path, f"the {name} root", checked=f.checked)
                    listed.setdefault((f.size, algo, expected), []).append(entry)
    hf_repos: list[Path] = []
    if hf_cache is not None and hf_cache.is_dir():
        allowed.append(Path(os.path.realpath(hf_cache)))
        own = hf_cache / ("models--" + repo_id.replace("/", "--"))
        try:
            others = sorted(p for p in hf_cache.glob("models--*") if p != own)
        except OSError:
            others = []
        hf_repos = [own, *others]
    unrecorded = tuple(
        (path, f"the {name} root")
        for name, path in same_model
        if os.path.realpath(path) != target and path.is_dir() and read_record(path) is None
    )
    return Sources(
        folder,
        _device(folder),
        tuple(allowed),
        {key: tuple(entries) for key, entries in listed.items()},
        tuple(hf_repos),
        unrecorded,
    )


def _device(folder: Path) -> int:
    for path in (folder, *folder.parents):
        try:
            return path.stat().st_dev
        except OSError:
            continue
    return -1


# --------------------------------------------------------------------------- link or copy, verify


def temp_path(folder: Path, rel: str) -> Path:
    """Where rel's bytes wait, linked or copied, until verified (`clean --incomplete` sees a leftover)."""
    return partial_path(folder, rel).with_suffix(REUSE_SUFFIX)


def reuse_files(folder: Path, found: Sequence[tuple[RepoFile, Candidate]]) -> dict[str, FileResult]:
    """Link or copy each file's candidate into the folder, verified; {path: result} of those published.

    A file that cannot be linked or copied, or whose bytes do not match, is left out (and logged):
    the caller fetches it. Its candidate is never changed.
    """
    staged: list[tuple[RepoFile, Candidate, str]] = []  # (file, its source, cloned | linked | copied)
    results: dict[str, FileResult] = {}
    try:
        for remote, candidate in found:
            how = _stage(folder, remote, candidate)
            if how is not None:
                staged.append((remote, candidate, how))
        hashed = _verify(folder, staged)
        for remote, candidate, how in staged:
            result = _publish(folder, remote, candidate, how, hashed.get(remote.path))
            if result is not None:
                results[remote.path] = result
    finally:
        for remote, _, _ in staged:
            if remote.path not in results:
                temp_path(folder, remote.path).unlink(missing_ok=True)
    return results


def _stage(folder: Path, remote: RepoFile, candidate: Candidate) -> str | None:
    """Put candidate's bytes at remote's temp name; how (cloned | linked | copied), None if not."""
    temp = temp_path(folder, remote.path)
    try:
        temp.parent.mkdir(parents=True, exist_ok=True)
        if not temp.parent.resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.ELOOP, f"{META_DIR}/{PARTIALS_DIR} leads outside {folder}")
        temp.unlink(missing_ok=True)
        how = place(candidate.path, temp)
        st = os.lstat(temp)
        if not stat.S_ISREG(st.st_mode) or st.st_size != remote.size:  # changed since it was looked at
            raise OSError(errno.EINVAL, "not a regular file of the listed size any more")
        return how
    except OSError as err:
        log.warning("%s: could not take it from %s (%s); fetching it", remote.path, candidate.path, err)
        temp.unlink(missing_ok=True)
        return None


def place(source: Path, temp: Path) -> str:
    """Put source's bytes at the new name temp: a clone (copy-on-write: no bytes shared with a later
    in-place edit), else a hard link (same filesystem), else a copy. Returns cloned | linked | copied."""
    if _clone(source, temp):
        return "cloned"
    try:
        os.link(source, temp, follow_symlinks=False)
        return "linked"
    except OSError as err:  # another filesystem (EXDEV), no hard links there, not ours (EPERM)
        log.debug("cannot link %s (%s); copying", source, err)
        _copy(source, temp)
        return "copied"


def _clone(source: Path, temp: Path) -> bool:
    """A copy-on-write clone of source at temp (FICLONE: btrfs, XFS, bcachefs…); False where none.

    Preferred to a hard link: the two names then share no bytes that a program editing one file
    in place could change under the other. Python has no call for it, hence the ioctl.
    """
    try:
        import fcntl
    except ImportError:
        return False
    ficlone = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
    try:
        with source.open("rb") as src, temp.open("xb") as dst:
            fcntl.ioctl(dst.fileno(), ficlone, src.fileno())
            os.fsync(dst.fileno())
    except OSError:  # EOPNOTSUPP, EXDEV, EINVAL, ENOTTY: no clones there
        temp.unlink(missing_ok=True)
        return False
    return True


def _copy(source: Path, temp: Path) -> None:
    """Copy the bytes (the kernel's copy_file_range/sendfile where it can), then flush them to disk."""
    shutil.copyfile(source, temp)
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_Hashed = tuple[Mapping[str, str], os.stat_result]  # a temp's digests, and its inode as hashed


def _verify(folder: Path, staged: Sequence[tuple[RepoFile, Candidate, str]]) -> dict[str, _Hashed]:
    """{path: digests and inode} of each staged temp: from the record that vouches for the very
    inode linked, else hashed. A temp that could not be hashed is left out.

    A copy is always hashed (its bytes are new); the hashes run on every core at once.
    """
    out: dict[str, _Hashed] = {}
    tasks: list[tuple[RepoFile, HashTask]] = []
    for remote, candidate, how in staged:
        temp = temp_path(folder, remote.path)
        checked = candidate.checked
        st = temp.stat()
        if how == "linked" and checked is not None and checked.is_current(st):
            out[remote.path] = (dict(checked.digests), st)
            continue
        algos = ("sha256",) if remote.is_lfs else ("sha256", GIT_SHA1)
        tasks.append((remote, HashTask(temp, Hasher(algos, remote.size), remote.size)))
    hash_files([task for _, task in tasks])
    for remote, task in tasks:
        if task.error is None and task.stat is not None and task.stat.st_size == remote.size:
            out[remote.path] = (task.hasher.hexdigests(), task.stat)
        else:
            log.warning("%s: could not hash %s (%s)", remote.path, task.path, task.error)
    return out


def _publish(
    folder: Path, remote: RepoFile, candidate: Candidate, how: str, hashed: _Hashed | None
) -> FileResult | None:
    algo, expected = remote.expected
    digests, st = hashed if hashed is not None else ({}, None)
    if digests.get(algo) != expected:
        log.warning(
            "%s: %s holds other bytes (%s %s, expected %s); not used, fetching the file",
            remote.path,
            candidate.path,
            algo,
            digests.get(algo),
            expected,
        )
        return None
    dest = folder / remote.path
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.parent.resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.ELOOP, f"{remote.path}: its folder leads outside {folder} through a symlink")
        os.replace(temp_path(folder, remote.path), dest)
    except OSError as err:
        log.warning("%s: could not publish it from %s (%s); fetching it", remote.path, candidate.path, err)
        return None
    _fsync_dir(dest.parent)
    forget_partials(folder, (remote.path,))  # a partial download of it is stale: the file is complete
    log.info("%s: %s from %s (%s), %s verified", remote.path, how, candidate.where, candidate.path, algo)
    return FileResult(
        remote.path,
        remote.size,
        digests.get("sha256"),
        0,
        0,
        action=REUSE,
        source=str(candidate.path),
        stat=st,
    )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
