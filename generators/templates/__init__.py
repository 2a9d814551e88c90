"""Prompt templates as versioned data files, and the one place they are loaded and filled.

Templates come in sets (one folder each): `paper/` follows the paper's prompts closely; `compact/`
says the same in a few lines for small local models, whose cost is dominated by reading the prompt.
Each YAML file holds an id, a version, the user (and optional system) text, the exact set of values
each sampled placeholder may take, and the runtime placeholders filled by the pipeline (a task from
the brainstorm pool, a language). Keeping them as data means a prompt change is a reviewed diff with
a version bump, and every output row records the id and version that produced it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Template:
    """A loaded prompt template; `placeholders` maps each sampled placeholder to its allowed values."""

    id: str
    version: int
    task_type: str
    step: str
    user: str
    system: str | None
    placeholders: dict[str, tuple[str, ...]]
    runtime: tuple[str, ...]

    def render(self, values: dict[str, str]) -> list[dict[str, str]]:
        """Fill the template; refuses a value outside its declared set so a typo cannot drift into data."""
        expected = set(self.placeholders) | set(self.runtime)
        missing = expected - set(values)
        extra = set(values) - expected
        if missing or extra:
            raise ValueError(
                f"template {self.id} v{self.version}: missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        for name, allowed in self.placeholders.items():
            if values[name] not in allowed:
                raise ValueError(f"template {self.id}: {name}={values[name]!r} not in {list(allowed)}")
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system.format_map(values).strip()})
        messages.append({"role": "user", "content": self.user.format_map(values).strip()})
        return messages


def _fields(text: str | None) -> set[str]:
    if not text:
        return set()
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _from_data(data: dict[str, Any], source: str) -> Template:
    placeholders = {k: tuple(str(v) for v in vals) for k, vals in (data.get("placeholders") or {}).items()}
    tpl = Template(
        id=str(data["id"]),
        version=int(data["version"]),
        task_type=str(data["task_type"]),
        step=str(data["step"]),
        user=str(data["user"]),
        system=data.get("system"),
        placeholders=placeholders,
        runtime=tuple(data.get("runtime") or ()),
    )
    used = _fields(tpl.user) | _fields(tpl.system)
    declared = set(placeholders) | set(tpl.runtime)
    if used != declared:
        raise ValueError(
            f"{source}: placeholders used in text {sorted(used)} != declared {sorted(declared)}"
        )
    for name, vals in placeholders.items():
        if not vals:
            raise ValueError(f"{source}: placeholder {name} has no values")
    return tpl


TEMPLATE_SETS = ("paper", "compact")


@lru_cache(maxsize=None)
def load_template(template_id: str) -> Template:
    """Load a bundled template by id, `<set>/<name>` (its path without `.yaml`)."""
    set_name, _, name = template_id.partition("/")
    if set_name not in TEMPLATE_SETS or not name:
        raise KeyError(f"template id must be <set>/<name> with set in {TEMPLATE_SETS}; got {template_id!r}")
    path = resources.files(__package__).joinpath(set_name, f"{name}.yaml")
    if not path.is_file():
        raise KeyError(f"no prompt template named {template_id!r}; known: {available_templates()}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    tpl = _from_data(data, f"{template_id}.yaml")
    if tpl.id != template_id:
        raise ValueError(f"{template_id}.yaml declares id {tpl.id!r}")
    return tpl


def available_templates() -> list[str]:
    """Ids of all bundled templates."""
    out = []
    for set_name in TEMPLATE_SETS:
        folder = resources.files(__package__).joinpath(set_name)
        out += [f"{set_name}/{p.name[:-5]}" for p in folder.iterdir() if p.name.endswith(".yaml")]
    return sorted(out)
