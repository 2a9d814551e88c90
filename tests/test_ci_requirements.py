"""In CI a missing optional dependency is a failure, not a skip (issue #7 item 7)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import require

REPO = Path(__file__).resolve().parents[1]


def test_require_skips_on_a_users_machine_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require(False, "xgrammar")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide xgrammar"):
        require(False, "xgrammar")
    require(True, "xgrammar")  # present: nothing happens


def test_ci_script_stops_when_the_browser_cannot_be_installed(tmp_path: Path) -> None:
    """A PATH without chromium and an apt-get that fails: .ci/run must stop before installing anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)  # type: ignore[arg-type]
    (bin_dir / "apt-get").write_text("#!/bin/bash\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    proc = subprocess.run(["bash", str(REPO / ".ci" / "run")], env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "error: chromium could not be installed" in proc.stderr
    assert "install" not in proc.stdout
