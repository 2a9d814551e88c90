"""The ``harness`` command line: the Typer app and what every command shares.

Exit codes are part of the interface (CI scripts depend on them): 0 all done, 1 some cells failed
(or a gate found a regression), 2 bad input. Bad input is always detected before anything is
written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from harness.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark harness for LLM-based text embedders.")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _prepare_environment() -> None:
    """What every command sets up before it imports a library: mteb's cache under the harness's own
    folder (``import mteb`` creates one), tokenizers without fork warnings, warnings and log levels
    for a readable terminal, and each mteb "superseded" warning once per command."""
    os.environ.setdefault("MTEB_CACHE", str(Path.home() / ".cache" / "harness" / "mteb"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import warnings

    warnings.filterwarnings("ignore")
    from harness.third_party_output import warn_superseded_once

    warn_superseded_once()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _echo_error(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)


def _bad_input(exc: Exception) -> NoReturn:
    """The one way any command reports bad input: one red line on stderr and exit code 2."""
    _echo_error(exc)
    raise typer.Exit(EXIT_BAD_INPUT)


def _matrix_path(file: Optional[Path], example: Optional[str]) -> Path:
    from harness.examples import example_path

    if (file is None) == (example is None):
        raise InputError(None, "FILE", "give either a matrix FILE or --example NAME", "e.g. 'harness run matrix.yaml' or 'harness run --example smoke'")
    return example_path(example) if example else file  # type: ignore[return-value]


FileArg = Annotated[Optional[Path], typer.Argument(help="Matrix YAML file.")]
ExampleOpt = Annotated[Optional[str], typer.Option("--example", help="A matrix shipped with the package (see 'harness ls examples').")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Run directory (default: matrix 'output:' or runs/<name>).")]
