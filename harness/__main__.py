"""``python -m harness``: the same CLI as the ``harness`` console script, for an environment where
the project is on ``PYTHONPATH`` but not pip-installed (a GPU machine with carried wheels)."""

from harness.cli import main

main()
