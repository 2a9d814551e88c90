"""``python -m harness.cli`` (torchrun launches training this way)."""

from harness.cli import main

if __name__ == "__main__":  # not when a spawned worker (--devices) imports the parent's main module
    main()
