"""How this process may reach the Hugging Face hub, read at call time.

``huggingface_hub`` reads ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` once, at import; tests, the CLI
and Ray workers set them later, so every hub lookup in trainers and harness asks here instead of
trusting the import-time constants.
"""

from __future__ import annotations

import os


def hub_offline() -> bool:
    """True when the hub must not be asked."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def hub_cache_dir() -> str | None:
    """The hub cache every load reads (``HF_HUB_CACHE`` as it is now; None: the library's default)."""
    return os.environ.get("HF_HUB_CACHE") or None
