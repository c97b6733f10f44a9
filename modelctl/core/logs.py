"""The action log: `-v` sends it to stderr, `--log-file PATH` appends it to a file with timestamps.

Core modules log through logging.getLogger("modelctl.<module>"); nothing there prints. A filter
masks anything that looks like a Hugging Face token, and the value of HF_TOKEN, in every record.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TextIO

_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{6,}")
# The userinfo of a URL: scheme://user:password@ or scheme://token@ (endpoints, proxies, mirrors).
_USERINFO_RE = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/?#@:]*)(?P<pw>:[^\s/?#@]*)?@"
)


def redact(text: str) -> str:
    """text with the password (or lone token) of any URL's userinfo masked.

    Every line modelctl writes (the terminal sinks, the log) passes through here, so an endpoint
    such as http://alice:pw@host is shown as http://alice:***@host wherever it is quoted.
    """
    return _USERINFO_RE.sub(_mask_userinfo, text) if "@" in text else text


def _mask_userinfo(match: re.Match[str]) -> str:
    if match["pw"] == ":PASSWORD" or match["user"] == "TOKEN":  # our hints' placeholders
        return match[0]
    if match["pw"] is None:  # scheme://secret@host: the whole userinfo may be a token
        return f"{match['scheme']}***@" if match["user"] else match[0]
    return f"{match['scheme']}{match['user']}:***@"


class RedactTokens(logging.Filter):
    """Never let a secret reach a log: `redact`, hf_… patterns and the current HF_TOKEN, in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        secret = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        if secret:
            message = message.replace(secret, "***")
        record.msg = _TOKEN_RE.sub("hf_***", redact(message))  # the log is never shown: mask broadly
        record.args = None
        return True


def mute_unless_configured() -> None:
    """Without -v or --log-file the log goes nowhere, warnings included.

    A logger with no handler at all has its WARNING records printed on stderr by logging's
    last-resort handler: each retry would be said twice, beside the progress line reporting it.
    """
    logger = logging.getLogger("modelctl")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def configure(*, verbose: bool, log_file: Path | None, stream: TextIO | None = None) -> None:
    """Attach the handlers asked for; without them the log goes nowhere (and costs nothing)."""
    logger = logging.getLogger("modelctl")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    logger.setLevel(logging.DEBUG if (verbose or log_file) else logging.WARNING)
    if verbose:
        console: logging.Handler = logging.StreamHandler(stream)
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        console.addFilter(RedactTokens())
        logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        to_file.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        )
        to_file.addFilter(RedactTokens())
        logger.addHandler(to_file)
