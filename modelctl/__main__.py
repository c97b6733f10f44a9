"""The entry point of `modelctl` and `python -m modelctl`.

Signals are taken care of first, before Typer, Rich and the rest are imported (~0.2 s): Ctrl-C
then never ends in a traceback, and SIGTERM / SIGHUP run the same cleanup as Ctrl-C (partial
files kept, verified files recorded) and exit 143 / 129.

Ctrl-C raises Interrupted (a KeyboardInterrupt subclass), not KeyboardInterrupt itself: when a
bare KeyboardInterrupt leaves a string handed to exec() or eval() (dataclasses and namedtuple
build their methods that way while modules are imported), CPython remembers it and, under
`python -m`, ends the process by SIGINT at exit however the exception was handled (exit -2
instead of 130, 1 run in 25). The flag checks the exact type, so a subclass never sets it.
"""

import signal
import sys
from types import FrameType

from modelctl.core.errors import Interrupted


def _stop(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the cleanup runs once, whatever follows
    raise Interrupted(signum)


def _ctrl_c(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)  # every Ctrl-C, as Python's own handler: a second one cuts the cleanup short


def install_signal_handlers() -> None:
    """Ctrl-C, SIGTERM and SIGHUP raise Interrupted in the main thread."""
    # Not when the process started with Ctrl-C ignored (nohup, `&` in a script): it stays ignored.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _ctrl_c)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)


def main() -> None:
    """Console-script entry point."""
    install_signal_handlers()
    try:
        from modelctl.cli import main as run

        run()  # a command's own interruption is handled inside (cli.ModelctlGroup)
    except KeyboardInterrupt as err:  # while starting: importing, building the command line
        signum = getattr(err, "signum", signal.SIGINT)
        sys.stderr.write("Interrupted while starting; nothing was done.\n")
        raise SystemExit(128 + signum) from None


if __name__ == "__main__":
    main()
