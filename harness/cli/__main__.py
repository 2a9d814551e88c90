"""``python -m harness.cli`` (torchrun launches training this way)."""

from harness.cli import main

main()
