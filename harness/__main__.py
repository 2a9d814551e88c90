"""``python -m harness``: the same CLI as the ``harness`` console script, for an environment where
the project is on ``PYTHONPATH`` but not pip-installed (a GPU machine with carried wheels).

Guarded: ``harness run --devices`` spawns workers, which re-import the parent's main module."""

from harness.cli import main

if __name__ == "__main__":
    main()
