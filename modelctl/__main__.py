"""The entry point of `modelctl` and `python -m modelctl`.

Signals are taken care of first, before Typer, Rich and the rest are imported (~0.2 s): Ctrl-C
then never ends in a traceback, and SIGTERM / SIGHUP run the same cleanup as Ctrl-C (partial
files kept, verified files recorded) and exit 143 / 129.
"""

import signal
import sys
from types import FrameType

from modelctl.errors import Interrupted


def _stop(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the cleanup runs once, whatever follows
    raise Interrupted(signum)


def main() -> None:
    """Console-script entry point."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        from modelctl.cli import main as run

        run()  # a command's own interruption is handled inside (cli.ModelctlGroup)
    except KeyboardInterrupt as err:  # while starting: importing, building the command line
        signum = getattr(err, "signum", signal.SIGINT)
        sys.stderr.write("Interrupted while starting; nothing was done.\n")
        raise SystemExit(128 + signum) from None


if __name__ == "__main__":
    main()
