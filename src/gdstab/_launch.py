"""The ``gdstab`` console entry point.

It installs gdstab's SIGINT/SIGTERM handler (:mod:`gdstab.interrupts`) before anything heavy is
imported, so that a Ctrl-C at any moment -- even while JAX loads -- ends in one line and exit
status 130 instead of a traceback, then runs :func:`gdstab.cli.main`."""

from __future__ import annotations



def main(argv=None) -> int:
    from gdstab import interrupts

    interrupts.install()
    try:
        with interrupts.polling():  # signals are taken up at safe points (or by the watchdog)
            from gdstab.cli import main as cli_main

            interrupts.check()
            return cli_main(argv)
    except KeyboardInterrupt as exc:  # gdstab.interrupts.Interrupted, or one raised before the handler
        return interrupts.report(exc)
    finally:
        # the command is over and its status decided: a signal during the interpreter's
        # shutdown (which restores the default handlers) must not kill the process instead
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
