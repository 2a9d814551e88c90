"""The ``harness`` command line.

Exit codes are part of the interface (CI scripts depend on them): 0 all done, 1 some steps failed
(or a gate found a regression), 2 bad input. Bad input is always detected before anything is
written. The Typer app and its shared helpers live in :mod:`harness.cli.app`; each command module
imports only that (never this package or each other), so there is no import cycle.
"""

from __future__ import annotations

import sys

import typer

from harness.cli.app import EXIT_BAD_INPUT, _echo_error, app
from inputio import InputProblem


def full_app() -> typer.Typer:
    """The app with every command registered (each module registers its commands on import)."""
    from harness.cli import library_commands, matrix, train  # noqa: F401

    return app


def main() -> None:
    """Console-script entry point."""
    full_app()
    try:
        app()
    except InputProblem as exc:  # any package's input error raised outside a command's own handler
        _echo_error(exc)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":  # torchrun -m harness.cli train ...
    main()
