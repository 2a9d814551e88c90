#!/usr/bin/env bash
# The one prepared GPU check of issue 18 (benchmarks/gpu_check.py says what it measures).
#
#   bash benchmarks/gpu_check.sh prepare            # here (CPU, PyPI reachable): fills .gpu-check/ (git-ignored)
#   bash benchmarks/gpu_check.sh                    # on the GPU machine, .gpu-check carried beside the checkout
#   GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh   # CPU dry run of every stage on a 2-layer model
#
# The GPU machine has torch, transformers, peft, sentence-transformers and typer but no network:
# what the harness needs beyond them travels as Python 3.12 wheels in .gpu-check/whl and is
# installed under /tmp/site. polars (mteb imports it; evaluation never uses it; 54 MB) is an empty
# stand-in module under /tmp/stubs, never in the project's packages.
set -uo pipefail
cd "$(dirname "$0")/.."
CHECK="${GPU_CHECK_DIR:-$PWD/.gpu-check}"
PY="${PYTHON:-python3}"

if [ "${1:-}" = "prepare" ]; then
  set -e
  mkdir -p "$CHECK/whl"
  grep -qx '/.gpu-check/' .git/info/exclude 2>/dev/null || echo '/.gpu-check/' >> .git/info/exclude
  # exact versions of this checkout's environment, for CPython 3.12 on x86-64
  WHEELS="mteb datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection
          pytrec-eval-terrier openai jiter distro sniffio py3langid"
  for name in $WHEELS; do
    version="$($PY -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
    [ -n "$version" ] || continue   # not needed by this environment's harness either
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d "$CHECK/whl" "$name==$version"
  done
  $PY benchmarks/gpu_check.py prepare --dest "$CHECK"
  du -sh "$CHECK"
  exit 0
fi

if ! $PY -c "import mteb, pydantic" 2>/dev/null && [ -d "$CHECK/whl" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CHECK"/whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! $PY -c "import polars" 2>/dev/null; then
  mkdir -p /tmp/stubs/polars && : > /tmp/stubs/polars/__init__.py
  export PYTHONPATH="/tmp/stubs${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GPU_CHECK_COMMIT="${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
OUT_DIR="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
$PY benchmarks/gpu_check.py run --data "$CHECK" --out "$OUT_DIR" ${GPU_CHECK_TINY:+--tiny}
