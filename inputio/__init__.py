"""Reading users' files, with one error style for every package: the input-side twin of ``atomicio``.

Configs (YAML) and data files (JSONL, optionally gzipped) reach the project through four packages
(harness, trainers, generators, leaderboards) that may not import each other freely, and each
raises its own input-error type, which its CLI maps to exit code 2. What they share is the reading:
a YAML syntax error names the line, a JSONL line that is not a JSON object names its 1-based line
number (as an editor shows it), a truncated gzip or a non-UTF-8 byte is an input error rather than a
traceback, and a blank line is skipped, never an error. So the reading lives here, once, and each
caller passes a small factory that turns ``(file, line, problem, fix)`` into its own error type.

Those error types share one base, :class:`InputProblem`: every message names the file, the line
when there is one, the field, and the fix, because a researcher reading a failed run at 2 a.m.
should not have to open the source to learn what to change. Each package keeps its own subclass
(its CLI catches it and exits 2), and the harness's entry point can catch the base for all of them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import yaml

class InputProblem(ValueError):
    """Input that cannot be used as given: ``FILE[, line N][: FIELD]: PROBLEM. Fix: FIX``.

    A subclass sets ``field_format`` (how a field is shown) and ``unnamed_file`` (what stands in for
    a file when the input has none, e.g. a command-line option); nothing else differs between the
    packages' error types.
    """

    field_format = "{field}"
    unnamed_file = "<input>"

    def __init__(self, file: str | Path | None, field: str | None, problem: str, fix: str, *,
                 line: int | None = None) -> None:
        self.file = str(file) if file is not None else None
        self.field = field
        self.problem = problem
        self.fix = fix
        self.line = line
        where = self.file or self.unnamed_file
        if line is not None:
            where += f", line {line}"  # 1-based, as an editor shows it
        if field:
            where += ": " + self.field_format.format(field=field)
        super().__init__(f"{where}: {problem}. Fix: {fix}")


# (file, where, problem, fix) -> the caller's input error; ``where`` is "line N" or None.
ErrorFactory = Callable[[Path, "str | None", str, str], Exception]
# (file, 1-based line or None for the whole file, problem, fix) -> the caller's input error.
LineErrorFactory = Callable[[Path, "int | None", str, str], Exception]


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file, transparently un-gzipping ``*.gz`` (BEIR ships ``corpus.jsonl.gz``)."""
    path = Path(path)
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


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


def iter_json_objects(path: Path, error: LineErrorFactory, *, context: str = "",
                      fix: str = "write one JSON object per line (JSONL); check quoting and escapes on this line",
                      ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(1-based line number, object)`` for every non-blank line of a JSONL file.

    A malformed line is an error, never skipped: silently dropping rows changes a dataset without a
    word. ``context`` is appended to each problem (e.g. "in an eval file given for contamination")
    so the user learns which of their inputs is meant; ``fix`` is the caller's advice for a bad line.
    """
    lineno: int | None = None
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(path, lineno, f"not valid JSON ({exc.msg} at column {exc.colno}){context}", fix) from None
                if not isinstance(obj, dict):
                    raise error(path, lineno, f"a JSON {type(obj).__name__}, not an object{context}", fix)
                yield lineno, obj
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        where = f" after line {lineno}" if lineno else ""
        raise error(path, None, f"cannot be read{where} ({exc}){context}",
                    "replace it with a readable UTF-8 (optionally gzip) JSONL file") from None


# --- validation errors ------------------------------------------------------------------------------

class FieldProblem:
    """The first error of a pydantic ``ValidationError``, said the way a user needs it.

    ``loc``/``field``: where (``("backend", "concurrency")`` / ``backend.concurrency``), or None at
    the top level; ``kind``: pydantic's error type; ``input``: the offending value; ``message``: the
    error's own words (``Value error, `` and the final period removed); ``more``: how many other
    fields are wrong too; ``problem``: what is wrong, for the message (the unknown field's name, or
    "required field is missing", or ``message``; with "(and N more problem(s))" when ``more``);
    ``fix``: the generic fix for the error's kind. Callers that know better pass ``allowed`` (the
    valid field names at the error's place, or a function of ``loc`` returning them, for "did you
    mean") and ``docs`` (a page the fix points to), or compose their own wording from the parts.

    ``loc_depth`` keeps only the first N parts of the location: a union's failing branch appears in
    pydantic's location (``label.int``), which is no field of the user's file. Errors at the same
    (kept) location count as one problem, so a value that fits no branch of a union is one problem,
    not one per branch.

    Every package read its configs and rows through its own copy of this translation; one copy
    keeps the wording (and the "unknown field -> did you mean" rule) the same everywhere.
    """

    def __init__(self, exc: Any, *, allowed: "list[str] | Callable[[tuple[Any, ...]], list[str]] | None" = None,
                 docs: str | None = None, skip_loc: frozenset[str] = frozenset(),
                 loc_depth: int | None = None) -> None:
        import difflib

        def where(error: dict[str, Any]) -> tuple[Any, ...]:
            loc = [p for p in error.get("loc", ()) if not (isinstance(p, str) and p in skip_loc)]
            return tuple(loc[:loc_depth] if loc_depth is not None else loc)

        errors = exc.errors()
        first = errors[0]
        self.loc = where(first)
        loc = self.loc
        self.kind = str(first.get("type", ""))
        self.field: str | None = ".".join(str(p) for p in loc) or None
        self.input = first.get("input")
        self.message = str(first.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
        self.more = len({where(e) for e in errors} - {loc})
        see = f" (see {docs})" if docs else ""
        if self.kind == "extra_forbidden":
            bad = str(loc[-1]) if loc else ""
            names = allowed(loc) if callable(allowed) else (allowed or [])
            close = difflib.get_close_matches(bad, names, n=1)
            self.problem = f"unknown field {bad!r}"
            self.fix = (f"rename it to {close[0]!r}" if close else
                        f"remove it; allowed fields here: {', '.join(names)}" if names else f"remove it{see}")
        elif self.kind == "missing":
            self.problem = "required field is missing"
            self.fix = (f"add '{loc[-1]}:'" + (" to this entry" if len(loc) > 1 else "")) if loc else f"add the missing field{see}"
        else:
            self.problem = self.message
            self.fix = (f"change the value as the message says{see}" if self.kind in ("value_error", "assertion_error")
                        else f"give a value of the right type and range{see}")
        self.problem = self.and_more(self.problem)

    def and_more(self, problem: str) -> str:
        """``problem`` (a caller's own wording of the first error) with "(and N more problem(s))" when there are more."""
        return problem + (f" (and {self.more} more problem{'s' if self.more > 1 else ''})" if self.more else "")


def field_problem(exc: Any, *, allowed: "list[str] | Callable[[tuple[Any, ...]], list[str]] | None" = None,
                  docs: str | None = None, skip_loc: frozenset[str] = frozenset(),
                  loc_depth: int | None = None) -> FieldProblem:
    """See :class:`FieldProblem`; the one translation of a pydantic ``ValidationError``."""
    return FieldProblem(exc, allowed=allowed, docs=docs, skip_loc=skip_loc, loc_depth=loc_depth)
