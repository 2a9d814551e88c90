"""What third-party libraries print, tamed: no progress bars under ``--no-progress``, and mteb's
"superseded task" warning once per message instead of once per cell.

``--no-progress`` exists for CI logs and scripted runs, where every redrawn bar is another line of
noise. The harness's own bars honour the flag directly, but libraries it calls draw bars they offer
no switch for: transformers' "Loading weights" (it has a global switch, used here) and mteb's bitext
evaluator ("Matching sentences", which ignores ``show_progress_bar``). Those are silenced by making
every ``tqdm`` bar created inside :func:`progress_bars_hidden` a disabled one, and restored after.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any


class OncePerMessage(logging.Filter):
    """Let each distinct message through once; repeats (same text) are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text in self._seen:
            return False
        self._seen.add(text)
        return True


_SUPERSEDED_LOGGER = "mteb.abstasks.abstask"  # where AbsTask.check_if_dataset_is_superseded logs


def warn_superseded_once() -> None:
    """mteb logs "task X is superseded" on every evaluation of X, i.e. once per (model, task) cell.

    Called when a command starts: each run (also several in one process, as in tests or a notebook)
    shows each message once, so the memory of what was shown starts empty.
    """
    log = logging.getLogger(_SUPERSEDED_LOGGER)
    for f in log.filters:
        if isinstance(f, OncePerMessage):
            f._seen.clear()
            return
    log.addFilter(OncePerMessage())


@contextmanager
def progress_bars_hidden(hidden: bool = True) -> Iterator[None]:
    """Within the block, every tqdm bar (ours or a library's) is created disabled; no-op if not ``hidden``."""
    if not hidden:
        yield
        return
    import tqdm.std

    raw = tqdm.std.tqdm.__dict__["__init__"]  # a partialmethod (tqdm's env defaults): restore it as is
    original = tqdm.std.tqdm.__init__

    @wraps(original)
    def disabled_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    restore_transformers = _transformers_bars(enabled=False)
    tqdm.std.tqdm.__init__ = disabled_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        tqdm.std.tqdm.__init__ = raw  # type: ignore[method-assign]
        if restore_transformers:
            _transformers_bars(enabled=True)


def _transformers_bars(enabled: bool) -> bool:
    """Switch transformers' own bars; returns True if they were on (so the caller restores them)."""
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:
        return False
    was_on = tf_logging.is_progress_bar_enabled()
    if enabled:
        tf_logging.enable_progress_bar()
    else:
        tf_logging.disable_progress_bar()
    return was_on
