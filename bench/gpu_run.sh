#!/usr/bin/env bash
# Every GPU check of issue 11 in one go, in order of what matters most, each step under
# its own time limit (a device lease is short): run on the GPU machine from the repo root
# after `bash bench/gpu_carry.sh` here, carrying .gpu-carry/carry.tar.xz:
#
#   bash bench/gpu_run.sh [OUT_DIR] [STEPS]      # STEPS: e.g. "fast app quant" (default all)
#
# fast:  bf16 and the fast path (static cache + torch.compile), engine and app, with
#        cProfile of a long prompt's first token and of a reply, and the fast path's checks
# app:   the app itself at 80x24 in tmux, the tutorial's 8-bit mode: streams, stops, quits
# aoc:   torchao int8 weight-only + the fast path, engine and app
# quant: the eager quantized modes: nf4, torchao int8, bitsandbytes 8-bit
# Logs and gpu_engine.jsonl go to OUT_DIR (default ./gpu-out). To check the script on a
# CPU: GPU_RUN_ARGS="--tiny --tokens 16 --prompt 100 --runs 1" GPU_APP_ARGS="--tiny
# --quant none" bash bench/gpu_run.sh /tmp/gpu-out "fast app".
set -uo pipefail
out=${1:-gpu-out}
steps=${2:-fast app aoc quant}
mkdir -p "$out"
if [ -f .gpu-carry/carry.tar.xz ] && [ ! -d /tmp/carry ]; then
    tar -xJf .gpu-carry/carry.tar.xz -C /tmp
fi
# shellcheck disable=SC1091
[ -f /tmp/carry/env.sh ] && source /tmp/carry/env.sh
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CHATAPP_CONFIG_DIR=/tmp/chatapp-gpu/config CHATAPP_DATA_DIR=/tmp/chatapp-gpu/data
export CHATAPP_CACHE_DIR=/tmp/chatapp-gpu/cache TORCHINDUCTOR_CACHE_DIR=/tmp/chatapp-gpu/inductor
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
"$PY" - <<'EOF'
import importlib, os
for name in ("torch", "transformers", "textual", "bitsandbytes", "torchao", "tokenizers"):
    try:
        print(name, importlib.import_module(name).__version__, flush=True)
    except Exception as exc:  # noqa: BLE001
        print(name, "missing:", type(exc).__name__, exc)
print("cpus", os.cpu_count())
EOF
command -v tmux && tmux -V
engine() {  # engine MODES APP_MODES SECONDS [MORE ARGS]
    timeout "$3" "$PY" bench/gpu_engine.py --modes "$1" --app-modes "$2" \
        --out "$out/gpu_engine.jsonl" ${GPU_RUN_ARGS:-} "${@:4}" 2>&1 | grep -v -E "^W[0-9]{4} |Failed to load|^\s*$" |
        tee -a "$out/engine.log"
}
for step in $steps; do
    echo "=== $step $(date +%T)"
    case $step in
    fast) engine none,none+compile none+compile 240 --profile ;;
    app) timeout 120 "$PY" bench/gpu_app.py ${GPU_APP_ARGS:---quant 8bit} --load-timeout 90 2>&1 | tee "$out/app.log" ;;
    aoc) engine ao-int8+compile ao-int8+compile 170 ;;
    quant) engine 4bit,ao-int8,8bit none 230 ;;
    esac
done
echo "=== done $(date +%T)"
