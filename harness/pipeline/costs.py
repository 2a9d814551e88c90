"""Cost estimates of a plan's steps (placeholder being replaced in this session: see issue 11)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Costs:
    per_step: dict[str, dict[str, Any]] = field(default_factory=dict)
    total: dict[str, Any] = field(default_factory=dict)

    def describe(self, key: str) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.per_step.get(key, {}).items())

    def describe_total(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.total.items()) or "n/a"


def estimate_costs(plan: Any) -> Costs:
    return Costs()
