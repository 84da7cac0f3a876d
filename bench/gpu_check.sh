#!/usr/bin/env bash
# GPU check (at most ~13 minutes on one H100 / H200: a ~300M-parameter part, then the 7B stage, whose commands
# run only until a 750-s deadline): MFT vs FFT steps, CPU-vs-GPU masks, landscape point vs eval pass, peak
# memory vs `mftlab plan`; at 7B also FSDP FFT (torchrun), eval / wanda / snip with --device cuda and a 2x2
# models-plane landscape. Every row is marked "measured" or "plan". Without CUDA it runs a small CPU fallback
# and marks the GPU rows pending. Writes bench/gpu_results.json and the `## GPU check` section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
[ -x "$py" ] || py=python3
exec timeout 900 "$py" bench/gpu_check.py "$@"
