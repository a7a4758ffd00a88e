#!/usr/bin/env bash
# Build what the GPU benches need on a device machine that has torch and transformers but
# no textual, platformdirs, bitsandbytes, torchao or tmux, and can fetch nothing:
#
#   bash bench/gpu_carry.sh            # here: writes .gpu-carry/carry.tar.xz (~25 MB)
#   # there (the device tool carries .gpu-carry):
#   tar -xJf .gpu-carry/carry.tar.xz -C /tmp && source /tmp/carry/env.sh
#
# The tarball holds the Python packages unpacked (bitsandbytes keeps only its CUDA 13
# libraries: the wheel's 129 MB of libraries for every CUDA would not fit the 64 MiB the
# tool carries), this machine's tmux with its libraries, and the bundled model's tokenizer
# (random_model_folder reads it from $CHATAPP_BENCH_TOKENIZER instead of converting the
# GGUF, which is not there). Add "--exclude" lines to .git/info/exclude for .gpu-carry/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CARRY=.gpu-carry
STAGE=$(mktemp -d)/carry
mkdir -p "$CARRY/whl" "$STAGE/site" "$STAGE/bin" "$STAGE/lib" "$STAGE/tokenizer"
wheels=(textual==8.2.8 rich==15.0.0 mdit-py-plugins==0.7.0 markdown-it-py==4.3.0
    platformdirs==4.14.8 tomlkit==0.15.2 transformers==5.24.0 linkify-it-py==2.2.0
    uc-micro-py==2.0.0 regex==2026.11.19 bitsandbytes==0.50.2 torchao==0.18.0)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/whl" \
    "${wheels[@]}" 2>&1 | grep -v "is ignored" || true
for wheel in "$CARRY"/whl/*.whl; do
    "$PY" -m zipfile -e "$wheel" "$STAGE/site"
done
find "$STAGE/site/bitsandbytes" -name 'libbitsandbytes_*.so' \
    ! -name '*cuda130*' ! -name '*cuda132*' ! -name '*cpu*' -delete
cp "$(command -v tmux)" "$STAGE/bin/"
for lib in $(ldd "$(command -v tmux)" | awk '/=>/{print $3}' | grep -E 'utempter|event|tinfo'); do
    cp -L "$lib" "$STAGE/lib/"
done
tokenizer=$("$PY" -c 'from chatapp.engine.loading import ensure_bundled_model; print(ensure_bundled_model())')
cp "$tokenizer"/tokenizer.json "$tokenizer"/tokenizer_config.json "$STAGE/tokenizer/"
cat > "$STAGE/env.sh" <<'EOF'
export PYTHONPATH=/tmp/carry/site${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/carry/bin:$PATH
export LD_LIBRARY_PATH=/tmp/carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CHATAPP_BENCH_TOKENIZER=/tmp/carry/tokenizer
EOF
tar -C "$(dirname "$STAGE")" -cJf "$CARRY/carry.tar.xz" carry
rm -rf "$(dirname "$STAGE")"
ls -la "$CARRY/carry.tar.xz"
