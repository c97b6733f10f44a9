"""Errors modelctl raises: each carries its exit code and a hint saying what to do next.

The class names are those of the `model_manager` module that projects used before modelctl
(ConfigurationError, MissingModelError, BadChecksumError, DownloadError under one base), so its
users can switch without renaming.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple, TypeVar


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INTEGRITY = 3
    NOT_FOUND = 4
    NO_SPACE = 5


class Step(NamedTuple):
    """A part of a next step that each front end words its own way, held in a hint as `{0}`,
    `{1}`, ...: an option of what failed (kind "option": the CLI says `--to PATH`, the API
    `to=PATH`) or a command to run ("command": the CLI says `modelctl lock MODEL`). The core names
    what to change; it never spells a flag."""

    kind: str  # "option" | "command"
    name: str  # the option's or the command's name: "to", "lock"
    value: str = ""  # what it takes: "PATH", a model id
    options: tuple[str, ...] = ()  # a command's options, by name: ("incomplete", "size 0.5b")
    env: str = ""  # a setting the command runs with: "HF_HUB_OFFLINE=0"

    def adding(self, *options: str) -> Step:
        """The same command with more options."""
        return self._replace(options=self.options + options)


def option(name: str, value: str = "") -> Step:
    return Step("option", name, value)


def command(name: str, value: str = "", *options: str, env: str = "") -> Step:
    return Step("command", name, value, options, env)


Voice = Callable[[Step], str]


def plain_words(step: Step) -> str:
    """Steps worded where no front end said how (a library that imports neither cli/ nor api)."""
    return f"the `{step.name}` {step.kind}" + (f" ({step.value})" if step.value else "")


_VOICE: list[Voice] = [plain_words]


def worded(template: str, steps: tuple[Step, ...], voice: Voice) -> str:
    """template with its `{0}`, `{1}`, ... as that voice says steps[0], steps[1], ...

    One pass, and only the fields there are steps for: a path in the text may hold braces.
    """
    if not steps:
        return template
    words = [voice(step) for step in steps]
    return re.sub(r"\{(\d)\}", lambda m: words[int(m[1])] if int(m[1]) < len(words) else m[0], template)


def speak(voice: Voice, *, unless_spoken: bool = False) -> None:
    """Word every hint's steps so from now on: the front end in use says it once (cli/ does;
    the API only when no front end has spoken yet)."""
    if not unless_spoken or _VOICE[0] is plain_words:
        _VOICE[0] = voice


def spoken(template: str, *steps: Step) -> str:
    """Text for a report (a finding, a message) with its steps in the voice of the front end in use."""
    return worded(template, steps, _VOICE[0])


class ModelctlError(Exception):
    """Base class: a message naming what went wrong, a hint, and the process exit code.

    The hint may hold steps (`{0}`, ... with `steps=(option("to", "PATH"),)`): what to change, as
    data; `hint` words them in the voice of the front end in use (`speak`), `worded` in any.
    """

    exit_code: ExitCode = ExitCode.FAILURE
    default_hint = "Run with MODELCTL_DEBUG=1 for a traceback."
    default_steps: tuple[Step, ...] = ()
    # The next step in the Python API's terms (a function or argument to change), where it differs
    # from the CLI's hint; the API (api.py) raises the error with it as its hint. A class's
    # default_api_hint goes with its default_hint.
    default_api_hint: str | None = None

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        api_hint: str | None = None,
        steps: tuple[Step, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.template = hint if hint is not None else self.default_hint
        self.steps = steps if hint is not None else self.default_steps
        self.api_hint = api_hint if api_hint is not None or hint is not None else self.default_api_hint

    @property
    def hint(self) -> str:
        return spoken(self.template, *self.steps)

    @hint.setter
    def hint(self, text: str) -> None:
        self.template, self.steps = text, ()

    def worded(self, voice: Voice) -> str:
        """The hint with its steps in that voice."""
        return worded(self.template, self.steps, voice)

    def in_api_terms(self, voice: Voice = plain_words) -> ModelctlError:
        """Self, with the API's hint as its hint when it has one, else its steps worded in the
        API's voice (api.py raises errors so)."""
        if self.api_hint is not None:
            self.template = self.api_hint  # which may name the same steps
        self.hint = self.worded(voice)
        return self

    def reworded(self, message: str) -> ModelctlError:
        """The same error (class, exit code, hint, attributes) with another message; raise it `from` self.

        For a caller that adds context: the failure keeps its exit code and stays catchable as itself.
        """
        cls = type(self)
        copy = cls.__new__(cls, message)  # no __init__: a subclass may take other arguments
        copy.__dict__.update(self.__dict__)
        copy.message = message
        return copy


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP, raised in the main thread by the `modelctl` command (__main__.py).

    So every path that keeps partial files and records verified ones on Ctrl-C does the same on
    `kill`, a closed terminal or a container stopping; the exit code is 128 + the signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# The earlier model_manager module called its base class ModelManagerError: kept as an alias.
ModelManagerError = ModelctlError


class ConfigurationError(ModelctlError):
    """The registry (models.yaml) or a setting is invalid."""

    default_hint = "Fix the registry file named above; docs/registry.md lists every key."


class UsageError(ModelctlError):
    """The command line asks for something that cannot be done as written."""

    exit_code = ExitCode.USAGE
    default_hint = "Run the command with {0} to see the choices."
    default_steps = (option("help"),)
    default_api_hint = "Check the arguments against the function's docstring."


class MissingModelError(ModelctlError):
    """A model id, size variant, repo, revision or file does not exist."""

    exit_code = ExitCode.NOT_FOUND
    default_hint = "Run {0} to see the models in the registry."
    default_steps = (command("list"),)
    default_api_hint = "ModelManager.from_config().config.models lists the registry's models."


class BadChecksumError(ModelctlError):
    """Bytes on disk or on the wire do not match what was expected."""

    exit_code = ExitCode.INTEGRITY
    default_hint = "Run {0} to repair the files that failed."
    default_steps = (command("ensure", "MODEL"),)
    default_api_hint = "Call ModelManager.ensure_model(model_id) to repair the files that failed."


class DownloadError(ModelctlError):
    """A transfer failed (network, Hub, I/O)."""

    default_hint = "Check the network and HF_ENDPOINT, then run the same command again: it resumes."

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        is_retryable: bool = False,
        api_hint: str | None = None,
        retry_delay: float | None = None,
        steps: tuple[Step, ...] = (),
    ) -> None:
        super().__init__(message, hint, api_hint=api_hint, steps=steps)
        self.is_retryable = is_retryable
        self.retry_delay = retry_delay  # the wait the server asked for (Retry-After), if any


class CertificateError(DownloadError):
    """A server's TLS certificate failed verification: not trusted, expired, or for another name.

    Never retried (the next attempt meets the same certificate); tls.py builds it.
    """

    default_hint = (
        "Point REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE, SSL_CERT_FILE, SSL_CERT_DIR) at the CA that signs "
        "the server's certificate."
    )

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        host: str = "",
        reason: str = "",
        steps: tuple[Step, ...] = (),
    ) -> None:
        super().__init__(message, hint, steps=steps)
        self.host = host
        self.reason = reason  # not_trusted | expired | not_yet_valid | wrong_name


class NotEnoughSpaceError(ModelctlError):
    """The download plan needs more disk space than the target root has."""

    exit_code = ExitCode.NO_SPACE
    default_hint = "Free space on the target disk, or choose another root with {0}."
    default_steps = (option("to"),)
    default_api_hint = (
        "Free space on the target disk, or download elsewhere: ModelManager.from_config(cache_dir=...)."
    )


def disk_error(err: OSError, what: str) -> ModelctlError:
    """An OSError from writing to a storage root, as ours: a full disk is exit 5, the rest exit 1."""
    import errno

    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return NotEnoughSpaceError(
            f"{what}: the disk filled up; nothing unverified was published.",
            hint="Free space there and run the same command again: it resumes from the partial files.",
        )
    return DownloadError(
        f"{what}: {err.strerror or err}.",
        hint="Check the permissions and health of the target root.",
    )


def write_error(err: OSError, path: object, what: str = "") -> ModelctlError:
    """An OSError from replacing a small file (atomic.replace_text), as ours, naming the file.

    A full disk is exit 5; a hard-linked file or a permission problem exit 1. The file was left
    as it was, and no temp file was left beside it.
    """
    import errno

    doing = f" ({what})" if what else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return NotEnoughSpaceError(
            f"Cannot write {path}{doing}: the disk filled up; the file was left as it was.",
            hint="Free space there and run the same command again.",
        )
    if err.errno == errno.EMLINK:
        return ConfigurationError(
            f"Cannot write {path}{doing}: {err.strerror}; it was left as it was.",
            hint="Make the other names symlinks to it (a symlink is written through), then run the command again.",
        )
    return ConfigurationError(
        f"Cannot write {path}{doing}: {err.strerror or err}; it was left as it was.",
        hint="Check the permissions of the file and its folder.",
    )


E = TypeVar("E", bound=BaseException)


def in_chain(err: BaseException, kind: type[E]) -> E | None:
    """The first exception of `kind` in err's chain (causes and contexts): httpx, huggingface_hub
    and http.client wrap the socket or ssl error that says what really happened."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_error(err: BaseException, limit: int = 300) -> str:
    """An exception as one line for a message: its text (or class name), first line, cut at limit."""
    return (str(err).strip() or type(err).__name__).splitlines()[0][:limit]
