"""One lock for loading models in this process: transformers' loading is not thread-safe.

transformers 5 builds a model inside context managers that patch *class* attributes for the whole
process and restore them on exit (``no_init_weights`` swaps ``PreTrainedModel.init_weights`` and
torch's ``nn.init`` functions for no-ops, ``no_tie_weights`` swaps ``PreTrainedModel.tie_weights``).
Two threads loading at once interleave those saves and restores: the second saves the first's
no-op as "the original" and restores it last, so weight tying and initialisation stay disabled for
every later model of the process. Seen here: after ``harness run --jobs 2`` a GGUF base's tied
``lm_head`` stayed on the meta device ("Cannot copy out of meta tensor" when saving its dense copy).

``harness run --jobs N`` runs units in threads, so every place the project builds a model or
tokenizer (harness embedders, trainers, the local generator backend) does it under
:func:`model_loading`. Loading is a small part of a unit's time; encoding and training still
overlap freely. A re-entrant lock, so a loader may call another loader.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

_LOCK = threading.RLock()


def model_loading() -> AbstractContextManager[bool]:
    """``with model_loading(): AutoModel.from_pretrained(...)``: one model built at a time in this process."""
    return _LOCK
