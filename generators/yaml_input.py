"""Reading a user's YAML file into a mapping, with one error style for every config the project reads.

Both the generation config (here) and the harness's matrix file need the same thing: parse with
``yaml.safe_load``, turn a syntax error into "file: line N: not valid YAML (...)", and insist on a
top-level mapping. It lives in ``generators`` because libraries may not import ``harness`` while
``harness`` may import the libraries; the caller passes its own input-error type (both share the
``(file, field, problem, fix)`` constructor), so each package keeps raising the error its CLI maps
to exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

ErrorFactory = Callable[[Path, "str | None", str, str], Exception]


def read_yaml_mapping(path: Path, error: ErrorFactory, mapping_fix: str) -> dict[str, Any]:
    """Parse ``path`` as YAML; syntax errors name the line, and the top level must be a mapping.

    ``mapping_fix`` tells the user how the file should start (it differs between config kinds).
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise error(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else None
        raise error(path, line, f"not valid YAML ({getattr(exc, 'problem', None) or exc})", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise error(path, None, "the top level must be a YAML mapping", mapping_fix)
    return raw
