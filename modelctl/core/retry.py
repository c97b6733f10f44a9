"""Retries: how hard to try (RetryPolicy), the one rule for what follows a failure (`next_try`),
and the loop that tries again (`retry_call`).

The Hub's metadata (download.py), HEAD requests (transfer.py) and a service's model loaders
(loader.py) retry through `retry_call`; the download engine, which schedules many ranges at once,
asks `next_try` itself. Which HTTP answers are worth another attempt is `retry_for_status`, for
all of them. So what a retry is (which failures, backoff, Retry-After, fail-over along endpoints,
giving up) is decided here once. Kept free of HTTP and of logging:
`modelctl list` imports it (through the CLI's help texts), and must stay quick to start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:
    import threading

# The defaults, also quoted by the CLI's help texts.
DEFAULT_ATTEMPTS = 5
DEFAULT_TIMEOUT = 30.0  # seconds: to connect, and for each read
DEFAULT_LOCK_TIMEOUT = 600.0  # seconds to wait for another modelctl working on the same model
BACKOFF_BASE = 0.5  # seconds (about) before the second attempt, doubling with each failure
BACKOFF_MAX = 30.0
# The minimum speed of a body once it flows (curl's --speed-limit): less than this many bytes a
# second over a window of --timeout seconds, and the body is cut and retried. A read timeout alone
# never ends a server that trickles a byte a second. The engine (file bytes) and hub.py (the
# listing) both apply it.
MIN_SPEED = 1024

# Answers that say "not now" (timeout, rate limit, a failing server), not "never": worth another
# attempt. Any other 4xx is an answer the next attempt would get again. Of those, the ones that
# say "too many of you": a run opens fewer connections. Read through retry_for_status only.
RETRYABLE_STATUSES = frozenset({408, 429, *range(500, 600)})
BUSY_STATUSES = frozenset({429, 503})

T = TypeVar("T")


class RetryPolicy(NamedTuple):
    """How hard to try: attempts per file, socket timeout (connect and each read), backoff.

    A NamedTuple, not a frozen dataclass: the CLI imports this module for every command, and a
    dataclass costs ~0.5 ms to define (registry.py measured the same).
    """

    attempts: int = DEFAULT_ATTEMPTS
    timeout: float = DEFAULT_TIMEOUT
    backoff_base: float = BACKOFF_BASE
    backoff_max: float = BACKOFF_MAX
    retry_after_max: float = 300.0
    jitter: bool = True  # False: the exact doubling (a loader in one process, as seed 002 waits)

    def delay(self, attempt: int, asked: float | None = None) -> float:
        """Seconds to wait after failed `attempt`: what the failure asked for, else backoff; capped.

        The cap keeps a server's Retry-After of hours from hanging a run that could fail now.
        """
        wait = (
            asked
            if asked is not None
            else backoff_delay(attempt, self.backoff_base, self.backoff_max, jitter=self.jitter)
        )
        return min(wait, self.retry_after_max)


def backoff_delay(
    attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX, *, jitter: bool = True
) -> float:
    """Exponential backoff: base·2^(attempt-1), capped, times a factor in [0.5, 1) with jitter.

    The jitter keeps parallel downloads that failed together from retrying together.
    """
    wait = min(cap, base * 2 ** (attempt - 1))
    if not jitter:
        return float(wait)
    import random  # here: the CLI imports this module for its defaults at every start

    return float(wait * random.uniform(0.5, 1.0))


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's wait: seconds or an HTTP date; None if absent or unreadable.

    The one parser, for metadata and file bytes alike (policy.delay caps what it asks for).
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # here: the CLI imports this module for its defaults at every start

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class NextTry(NamedTuple):
    """Where and when the next attempt goes: wait `delay` seconds, then try `target`."""

    delay: float
    target: int


def next_try(
    policy: RetryPolicy, failures: int, asked: float | None, target: int, targets: int = 1
) -> NextTry | None:
    """The one rule for what follows a failure, for metadata (retry_call) and file bytes (engine).

    failures: attempts failed so far, the last one on `target` of `targets` places (a file's
    endpoints, in order); asked: the wait the failure asked for (Retry-After), else backoff.
    None when the attempts are used up. Another place is tried at once; the wait is paid only on
    wrapping around to the first: another endpoint is as likely to answer now as later.
    """
    if failures >= policy.attempts:
        return None
    delay = policy.delay(failures, asked)
    if targets > 1:
        target = (target + 1) % targets
        delay = delay if target == 0 else 0.0
    return NextTry(delay, target)


class Retry(Exception):
    """Raised by an attempt: a failure worth another attempt.

    delay: seconds to wait first (a server's Retry-After, 0 for "at once"); None: the policy's
    backoff. is_extra: a retry the attempt decided on and bounds itself (a refetch after a hash
    mismatch, a loader's repair) and has already reported: it is made even when the attempts are
    used up, on the same target, waiting `delay` (default none), without on_retry. is_busy: the
    server is overloaded (429, 503, a refused connection, a stall): a run opens fewer connections.
    """

    def __init__(
        self, reason: str, delay: float | None = None, *, is_extra: bool = False, is_busy: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.is_extra = is_extra
        self.is_busy = is_busy


def retry_for_status(status: int, retry_after_header: str | None) -> Retry | None:
    """The one classification of an HTTP answer, for metadata, HEADs and file bytes alike: the
    Retry it is worth (the wait its Retry-After asks, is_busy for an overloaded server), or None
    for an answer the next attempt would get again (the caller says what it means)."""
    if status not in RETRYABLE_STATUSES:
        return None
    return Retry(f"HTTP {status}", retry_after(retry_after_header), is_busy=status in BUSY_STATUSES)


class Cancelled(Exception):
    """The stop event was set (Ctrl-C): the work ends where it is, keeping what it has."""


def retry_call(
    attempt: Callable[[int, int], T],
    policy: RetryPolicy,
    *,
    targets: int = 1,
    first: int = 1,
    retry_on: Callable[[Exception], str | None] | None = None,
    on_retry: Callable[[int, float, str, int], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Call attempt(number, target) until it returns; wait and try again after each Retry.

    targets: how many places the attempt can try (a file's endpoints, in order). A retry goes to
    the next one at once and waits only when it wraps around to the first: another endpoint is
    as likely to answer now as later. first: the number of the first attempt (a caller that
    counts attempts across calls). retry_on(err): the reason to retry another exception, or None
    to let it through. on_retry(attempt, delay, reason, next target) reports each retry before its
    wait. stop: setting it ends the wait with Cancelled (without it the wait is a plain sleep).

    Out of attempts, the last failure goes up as the attempt raised it: the caller says what
    giving up means.
    """
    number, target = first - 1, 0
    while True:
        number += 1
        try:
            return attempt(number, target)
        except Exception as err:
            if isinstance(err, Retry):
                failure = err
            elif retry_on is not None and (reason := retry_on(err)) is not None:
                failure = Retry(reason, getattr(err, "retry_delay", None))  # a server's Retry-After
            else:
                raise
            if failure.is_extra:
                delay = min(failure.delay or 0.0, policy.retry_after_max)
            else:
                then = next_try(policy, number, failure.delay, target, targets)
                if then is None:
                    raise
                delay, target = then
                if on_retry is not None:
                    on_retry(number, delay, failure.reason, target)
        if stop is None:
            time.sleep(delay)
        elif stop.wait(delay):
            raise Cancelled(f"stopped before attempt {number + 1}")
