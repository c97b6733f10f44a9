"""The Hugging Face cache's layout, written: a verified model folder published as an HF snapshot.

transformers' `from_pretrained(repo_id)` and `hf` look for a repo in the cache as huggingface_hub
lays it out (`models--org--name/blobs/<etag>`, `snapshots/<commit>/<path>` → a relative symlink
to the blob, `refs/<revision>` holding the commit). huggingface_hub has no call that files bytes
fetched elsewhere into that layout, so it is written here: each blob is cloned, hard-linked or
copied from modelctl's verified copy (reuse.place), under a temp name then renamed, so a reader
never sees half a blob. A blob already there is kept only when it is that very file (a hard link
to it); any other (written by hf, or a copy that may have changed since) is replaced, so what
transformers reads is always the verified bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from modelctl.core.errors import BadChecksumError, DownloadError
from modelctl.core.hashing import GIT_SHA1, hash_file
from modelctl.core.record import RepoFile
from modelctl.store.reuse import place

_BLOB_NAME = re.compile(
    r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$"
)  # a git oid or a sha256: nothing else names a blob

_TEMP_SUFFIX = ".modelctl-tmp"  # not hf's `.incomplete`, which it would try to resume


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def export_snapshot(
    folder: Path, files: Iterable[RepoFile], repo_id: str, revision: str, commit: str, cache: Path
) -> Path:
    """Publish `files` of the model folder (verified) as the cache's snapshot of commit; its folder.

    refs/<revision> is written when the revision is a branch or tag (not the commit itself).
    """
    repo = repo_folder(cache, repo_id)
    snapshot = repo / "snapshots" / commit
    for remote in files:
        etag = remote.sha256 or remote.blob_id  # hf names an LFS blob by its sha256, others by the git oid
        if not _BLOB_NAME.match(etag):  # verified bytes have one; a listing may say anything
            raise DownloadError(
                f"{repo_id}/{remote.path}: the Hub's id {etag[:80]!r} cannot name a cache blob."
            )
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not _same_file(blob, folder / remote.path):  # a blob we did not place is not trusted
            temp = blob.with_name(etag + _TEMP_SUFFIX)
            temp.unlink(missing_ok=True)
            place(folder / remote.path, temp)
            os.replace(temp, blob)
        link = snapshot / remote.path
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, link.parent)
        if not (link.is_symlink() and os.readlink(link) == target):
            temp_link = link.with_name(link.name + _TEMP_SUFFIX)
            temp_link.unlink(missing_ok=True)
            os.symlink(target, temp_link)
            os.replace(temp_link, link)
    if revision != commit:
        ref = repo / "refs" / revision
        if ".." in revision.split("/") or revision.startswith("/"):  # git refuses such names too
            raise DownloadError(f"{repo_id}: revision {revision!r} cannot name a ref in the HF cache.")
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not (ref.is_file() and ref.read_text().strip() == commit):
            temp_ref = ref.with_name(ref.name + _TEMP_SUFFIX)
            temp_ref.write_text(commit)
            os.replace(temp_ref, ref)
    return snapshot


def _same_file(blob: Path, source: Path) -> bool:
    try:
        return os.path.samefile(blob, source)
    except OSError:
        return False


def check_snapshot(snapshot: Path, repo_id: str) -> None:
    """BadChecksumError unless every file of an HF snapshot hashes to its blob's name.

    huggingface_hub names a blob by its content (sha256 for LFS files, the git blob id for the
    others), so a snapshot modelctl did not write can still be verified offline, file by file.
    """
    for link in sorted(p for p in snapshot.rglob("*") if not p.is_dir()):
        name = Path(os.path.realpath(link)).name
        algo = "sha256" if len(name) == 64 else GIT_SHA1
        if not _BLOB_NAME.match(name):
            raise BadChecksumError(
                f"{repo_id}: {link.relative_to(snapshot)} in the HF cache is not a named blob."
            )
        digest = hash_file(link, (algo,))[0][algo]
        if digest != name:
            raise BadChecksumError(
                f"{repo_id}: {link.relative_to(snapshot)} in the HF cache is damaged: its blob "
                f"{name[:12]}… hashes to {digest[:12]}….",
                hint=f"Fetch it again online: `hf download {repo_id} --force-download`, or let modelctl "
                "download it (allow_offline=False).",
            )
