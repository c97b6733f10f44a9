"""The pure parts of downloading: the per-file decision and the HTTP header parsing."""

from __future__ import annotations

import email.utils
import time

import pytest

from modelctl.core.record import RepoFile
from modelctl.core.retry import BACKOFF_BASE, backoff_delay, retry_after, retry_for_status
from modelctl.fetch.download import DOWNLOAD, KEEP, RESUME, decide
from modelctl.net.transfer import content_range

REMOTE = RepoFile("model.safetensors", 1000, "a" * 64, "b" * 40)


@pytest.mark.parametrize(
    ("local", "force", "action", "offset"),  # local: (size on disk, verified, partial bytes)
    [
        ((None, False, None), False, DOWNLOAD, 0),
        ((1000, True, None), False, KEEP, 0),
        ((1000, True, None), True, DOWNLOAD, 0),
        ((1000, False, None), False, DOWNLOAD, 0),  # same size, wrong bytes
        ((None, False, 400), False, RESUME, 400),
        ((999, False, 400), False, RESUME, 400),  # a bad file and a partial: resume
        ((None, False, 400), True, DOWNLOAD, 0),  # --force does not resume
        ((None, False, 0), False, DOWNLOAD, 0),  # an empty partial is nothing to resume
        ((None, False, 1001), False, DOWNLOAD, 0),  # longer than the file: not ours
    ],
)
def test_decide(local: tuple[int | None, bool, int | None], force: bool, action: str, offset: int) -> None:
    on_disk, verified, partial = local
    plan = decide(REMOTE, on_disk, verified=verified, partial=partial, force=force)
    assert (plan.action, plan.offset) == (action, offset)
    assert plan.needed == (0 if action == KEEP else 1000 - offset)


def test_content_range() -> None:
    assert content_range("bytes 100-999/1000") == (100, 999, 1000)
    assert content_range("bytes 100-999/*") == (100, 999, None)
    assert content_range(None) == (None, None, None)
    assert content_range("items 1-2/3") == (None, None, None)


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after(later) or 0) <= 31
    assert retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_one_classification_of_statuses() -> None:
    """retry_for_status is what metadata, HEADs and file ranges ask (tests/test_layers.py holds
    that no other module names a status set)."""
    busy = retry_for_status(429, "7")
    assert busy is not None and (busy.reason, busy.delay, busy.is_busy) == ("HTTP 429", 7.0, True)
    failing = retry_for_status(500, None)
    assert failing is not None and (failing.delay, failing.is_busy) == (None, False)
    assert retry_for_status(503, None).is_busy  # type: ignore[union-attr]
    assert retry_for_status(408, None) is not None
    assert [retry_for_status(s, "1") for s in (400, 401, 403, 404, 416)] == [None] * 5


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempt in range(1, 5):  # 0.25-0.5 s, 0.5-1 s, 1-2 s, 2-4 s (BACKOFF_BASE 0.5 s)
        high = BACKOFF_BASE * 2 ** (attempt - 1)
        low = high / 2
        delays = [backoff_delay(attempt) for _ in range(50)]
        assert all(low <= d <= high for d in delays)
        assert len(set(delays)) > 1
    assert all(backoff_delay(30) <= 30.0 for _ in range(20))
