#!/usr/bin/env bash
# Build the one-folder desktop app (CPU torch) with PyInstaller, in its own build environment.
#
#     packaging/build.sh [BUILD_ROOT]          (default: build/desktop; Linux or macOS)
#
# Steps: a fresh venv in BUILD_ROOT/venv (the project's own environment is never touched) ->
# CPU torch -> the xrfcore wheel built from this checkout (it carries models/ and resources/) ->
# PyInstaller -> BUILD_ROOT/dist/xrfcore/ (run BUILD_ROOT/dist/xrfcore/xrfcore-gui) -> size and
# time printed and written to BUILD_ROOT/build-info.txt. Then check it with
#     packaging/smoke_test.sh BUILD_ROOT/dist/xrfcore
#
# Environment: SRC_DIR (build the wheel from this source tree instead of a clean copy of the
# checkout); PYTHON (interpreter for the venv, default python3, 3.11+); TORCH_SPEC (default
# "torch==2.13.0"); TORCH_INDEX_URL (a wheel index holding CPU-only torch builds, e.g. PyTorch's
# CPU index: without it pip may pick a much larger CUDA build on Linux); PYINSTALLER_SPEC (default
# "pyinstaller>=6.10").
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(mkdir -p "${1:-$REPO/build/desktop}" && cd "${1:-$REPO/build/desktop}" && pwd)
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PYI_SPEC=${PYINSTALLER_SPEC:-pyinstaller>=6.10}
VENV=$ROOT/venv
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s)
log() { echo "[build $(($(date +%s) - t0)) s] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating the build environment $VENV"
    "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python

log "installing CPU torch ($TORCH_SPEC)"
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$VPY" -m pip install -q "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
else
    "$VPY" -m pip install -q "$TORCH_SPEC"
fi

log "building the xrfcore wheel"
rm -rf "$ROOT/wheel"
SRC=${SRC_DIR:-$REPO}
if [ -z "${SRC_DIR:-}" ] && git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    # from a clean copy of the working tree (tracked + new files, nothing git ignores): no stale
    # build/ folders or scratch data can slip into the wheel
    SRC=$ROOT/src
    rm -rf "$SRC" && mkdir -p "$SRC"
    (cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$SRC")
fi
"$VPY" -m pip wheel -q --no-deps -w "$ROOT/wheel" "$SRC"
WHEEL=$(ls "$ROOT"/wheel/xrfcore-*.whl)
"$VPY" -m pip install -q --force-reinstall --no-deps "$WHEEL"
"$VPY" -m pip install -q "$WHEEL" "$PYI_SPEC"
(cd "$ROOT" && "$VPY" - <<'PY'
# from outside the checkout, so the installed package is the one imported
from xrfcore import _paths, models_registry
assert _paths.sample_core_dir() is not None, "the wheel lacks resources/sample_core"
assert models_registry.default_model() is not None, "the wheel lacks the default model"
print("wheel ok: default model", models_registry.default_model())
PY
)

if [ ! -f "$REPO/packaging/xrfcore.png" ]; then
    QT_QPA_PLATFORM=offscreen "$VPY" "$REPO/packaging/make_icon.py" "$REPO/packaging/xrfcore.png"
fi

log "running PyInstaller"
t1=$(date +%s)
rm -rf "$ROOT/dist/xrfcore"
(cd "$ROOT" && "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/work" "$REPO/packaging/xrfcore.spec")
t2=$(date +%s)
cp "$REPO/packaging/xrfcore.desktop" "$REPO/packaging/xrfcore.png" "$ROOT/dist/xrfcore/"

size=$(du -sh "$ROOT/dist/xrfcore" | cut -f1)
files=$(find "$ROOT/dist/xrfcore" -type f | wc -l)
torch_v=$("$VPY" -c "import torch; print(torch.__version__)")
pyi_v=$("$VENV/bin/pyinstaller" --version)
{
    echo "xrfcore desktop build $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -sm), $(getconf _NPROCESSORS_ONLN) CPU cores"
    echo "wheel: $(basename "$WHEEL"); torch $torch_v; PyInstaller $pyi_v"
    echo "app folder: $ROOT/dist/xrfcore ($size, $files files)"
    echo "time: PyInstaller $((t2 - t1)) s, whole build $((t2 - t0)) s"
} | tee "$ROOT/build-info.txt"
