#!/usr/bin/env bash
# Smoke test of the built desktop app: it must start with no display, open the bundled SIMULATED
# sample core, fine-tune the shipped default model on the sample's lab samples, predict every
# depth, and exit 0 (xrfcore-gui --self-test). A fresh, empty user folder (XRFCORE_HOME) makes sure
# only what is inside the bundle is used. Then the bundled command line lists the models
# (informative only).
#
#     packaging/smoke_test.sh [APP_FOLDER]      (default: build/desktop/dist/xrfcore)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
APP=${1:-$REPO/build/desktop/dist/xrfcore}
[ -x "$APP/xrfcore-gui" ] || { echo "smoke test: no app at $APP/xrfcore-gui (run packaging/build.sh first)" >&2; exit 1; }
EXE=$(cd "$APP" && pwd)/xrfcore-gui
HOME_DIR=$(mktemp -d)
trap 'rm -rf "$HOME_DIR"' EXIT
export XRFCORE_HOME=$HOME_DIR QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
# never fall back to a checkout's files
unset XRFCORE_RESOURCES XRFCORE_MODELS PYTHONPATH || true

t0=$(date +%s)
set +e
(cd "$HOME_DIR" && timeout "${SMOKE_TIMEOUT:-900}" "$EXE" --self-test --timeout "${SMOKE_TIMEOUT:-900}")
rc=$?
set -e
t1=$(date +%s)
echo "smoke test: xrfcore-gui --self-test exited $rc after $((t1 - t0)) s"
[ "$rc" -eq 0 ] || exit "$rc"
"$EXE" cli --version
"$EXE" cli models | tee "$HOME_DIR/models.txt"
# the listing is informative only: the self-test above is what must pass
grep -q "xrfcore-tiny-sim-v2\|SIMULATED" "$HOME_DIR/models.txt" \
    || echo "smoke test: WARNING: the bundled \`xrfcore models\` does not list the shipped model"
echo "smoke test: passed"
