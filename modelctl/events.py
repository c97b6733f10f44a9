"""What long operations report while they work: the protocols, and events that report nothing.

output.py implements them (Rich progress, plain lines); the library API defaults to NullEvents.
Kept apart from download.py and transfer.py so that importing them costs `list` nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from modelctl.download import ModelPlan
    from modelctl.transfer import FileJob, FileResult


class TransferEvents(Protocol):
    """Reported by the transfer engine (from worker threads)."""

    def file_start(self, job: FileJob, offset: int) -> None: ...
    def file_advance(self, job: FileJob, nbytes: int) -> None: ...
    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None: ...
    def file_done(self, job: FileJob, result: FileResult) -> None: ...


class DownloadEvents(TransferEvents, Protocol):
    """Reported by download planning and running."""

    def model_start(self, plan: ModelPlan) -> None: ...
    def lock_wait(self, folder: Path, pid: int | None) -> None: ...
    def metadata_retry(self, repo_id: str, attempt: int, delay: float, reason: str) -> None: ...


class NullEvents:
    """Events that report nothing: the library API's default, and --quiet's."""

    def model_start(self, plan: ModelPlan) -> None:
        pass

    def lock_wait(self, folder: Path, pid: int | None) -> None:
        pass

    def metadata_retry(self, repo_id: str, attempt: int, delay: float, reason: str) -> None:
        pass

    def file_start(self, job: FileJob, offset: int) -> None:
        pass

    def file_advance(self, job: FileJob, nbytes: int) -> None:
        pass

    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None:
        pass

    def file_done(self, job: FileJob, result: FileResult) -> None:
        pass
