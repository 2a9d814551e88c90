"""A progress bar that shows what a paid job needs watched: calls done, rejects, tokens, dollars."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """tqdm on stderr with done/rejected/tokens/cost in the postfix; silent when disabled."""

    def __init__(self, total: int, enabled: bool = True, desc: str = "generate") -> None:
        self._bar = tqdm(total=total, desc=desc, unit="call", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self.done = 0
        self.rejected = 0
        self.tokens = 0
        self.cost = 0.0

    def add_total(self, n: int) -> None:
        self._bar.total = (self._bar.total or 0) + n
        self._bar.refresh()

    def update(self, *, done: int = 0, rejected: int = 0, tokens: int = 0, cost: float = 0.0) -> None:
        self.done += done
        self.rejected += rejected
        self.tokens += tokens
        self.cost += cost
        self._bar.set_postfix(
            done=self.done, rejected=self.rejected, tokens=self.tokens, cost=f"${self.cost:.4f}", refresh=False
        )
        self._bar.update(done)

    def close(self) -> None:
        self._bar.close()
