#!/usr/bin/env bash
# The best end-to-end job until `mftlab demo` exists: baseline masks on the built-in tiny model,
# inspect them, apply one, and check the merged folder with plain transformers.
set -euo pipefail
out=${1:-demo-out}
bin=$(dirname "$0")/../.venv/bin
mkdir -p "$out"
rm -rf "$out/merged"
"$bin/mftlab" baseline tiny-llama --kind magnitude --mask-ratio 0.1 --layers 1-2 --out "$out/magnitude.safetensors"
"$bin/mftlab" baseline tiny-llama --kind random --mask-ratio 0.1 --layers 1-2 --seed 0 --out "$out/random.safetensors"
"$bin/mftlab" inspect "$out/magnitude.safetensors" --model tiny-llama
"$bin/mftlab" apply tiny-llama "$out/magnitude.safetensors" --out "$out/merged"
"$bin/python" - "$out/merged" <<'PY'
import sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if "layers.1." in n or "layers.2." in n)
print(f"merged model loads with plain transformers; {zeros:,} zero weights in layers 1-2")
PY
