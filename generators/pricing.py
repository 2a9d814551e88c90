"""What a call cost: USD per million input/output tokens per model, overridable from the config.

Prices change and differ by contract, so the table is a default, not a fact: `prices:` in the config
replaces or adds entries. A model with no price is reported (`unpriced_models`) rather than billed 0
silently; local models cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float


# Public list prices (USD / 1M tokens) as of 2025; override in the config for your contract.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}


class PriceTable:
    """Looks a model up by exact name, then by longest known prefix (dated snapshots share a price)."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.prices: dict[str, Price] = dict(DEFAULT_PRICES)
        if overrides:
            self.prices.update(overrides)

    def price(self, model: str) -> Price | None:
        if model.startswith("local:"):
            return Price(0.0, 0.0)
        if model in self.prices:
            return self.prices[model]
        best = max((m for m in self.prices if model.startswith(m)), key=len, default=None)
        return self.prices[best] if best else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int, discount: float = 0.0) -> float | None:
        """USD for one call, or None when the model has no price; `discount` is e.g. 0.5 for the Batch API."""
        p = self.price(model)
        if p is None:
            return None
        usd = (prompt_tokens * p.input_per_mtok + completion_tokens * p.output_per_mtok) / 1e6
        return usd * (1.0 - discount)


def price_table(overrides: Mapping[str, Any]) -> PriceTable:
    """The table with a config's `prices:` entries (objects with input_per_mtok / output_per_mtok) over the defaults."""
    return PriceTable({m: Price(p.input_per_mtok, p.output_per_mtok) for m, p in overrides.items()})
