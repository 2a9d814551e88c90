"""Issue #8 item 8: ``--no-progress`` hides every bar, including transformers' weight loading and mteb's own."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import cli

BAR = re.compile(r"\d+%\||it/s|Loading weights|Matching sentences")


def test_no_progress_run_prints_no_bars(smoke_copy: Path) -> None:
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 0, result.output
    assert not BAR.search(result.output), result.output
    assert "done all-MiniLM-L6-v2 × HarnessSmokeBitextMining" in result.output  # bitext draws mteb's bars


def test_bars_are_restored_after_the_run() -> None:
    import io

    import tqdm.std
    from tqdm.auto import tqdm as auto_tqdm

    from harness.third_party_output import progress_bars_hidden

    original = tqdm.std.tqdm.__dict__["__init__"]
    with progress_bars_hidden():
        assert auto_tqdm(range(3)).disable
    assert tqdm.std.tqdm.__dict__["__init__"] is original
    assert not auto_tqdm(range(3), file=io.StringIO()).disable
