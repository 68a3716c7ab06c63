#!/usr/bin/env bash
# Build Tagger's one-folder desktop bundle with PyInstaller, then prove it runs, headless.
#
#   packaging/build.sh                 build into dist/tagger and smoke-test it
#   SKIP_BUILD=1 packaging/build.sh    smoke-test an existing dist/tagger only
#   PYTHON=/path/to/python ...         build from another environment (default: .venv)
#
# The bundle contains whatever PyTorch the environment has. PyPI's Linux torch wheel is the
# CUDA build, which drags in ~3 GB of NVIDIA libraries; for a CPU-only release, build from
# an environment with the CPU wheel (see packaging/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
DIST=${DIST:-dist}
WORK=${WORK:-build/pyinstaller}
APP="$DIST/tagger/tagger"

step() { printf '\n== %s\n' "$*"; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    if ! "$PYTHON" -m PyInstaller --version >/dev/null 2>&1; then
        step "installing PyInstaller into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
        "$PYTHON" -m pip install --quiet "pyinstaller>=6.10"
    fi
    step "building with PyInstaller $("$PYTHON" -m PyInstaller --version)"
    started=$SECONDS
    "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$DIST" --workpath "$WORK" packaging/tagger.spec
    echo "built in $((SECONDS - started)) s"
    step "the networks' CPU exports, made once and shipped inside the bundle (tagger.inference.machine_cache)"
    for network in lite0 lite1; do  # the defaults without and with a GPU (tagger.inference.choice)
        "$DIST/tagger/tagger" prepare --backbone "$network" --into "$DIST/tagger/_internal/tagger/backbones"
    done
fi

[[ -x "$APP" ]] || { echo "build.sh: $APP is missing" >&2; exit 1; }

# Headless and isolated: no display, no user settings, no user library touched.
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
export QT_QPA_PLATFORM=offscreen
export HOME="$smoke/home" XDG_CONFIG_HOME="$smoke/config" XDG_DATA_HOME="$smoke/data"
export TAGGER_CACHE_DIR="$smoke/cache"
unset TAGGER_LIBRARY
mkdir -p "$HOME"
library="$smoke/library"

step "tagger --version"
"$APP" --version

step "import committed photos into a new library, then status"
mkdir -p "$smoke/photos"
found=0
for photo in tests/data/photos/*/*.jpg tests/data/awkward/python-pillow__hopper.png; do
    [[ -f "$photo" ]] || continue
    cp "$photo" "$smoke/photos/"
    found=$((found + 1))
    ((found < 4)) || break
done
"$APP" --library "$library" import "$smoke/photos"
"$APP" --library "$library" status

step "tag them on the CPU with the export shipped in the bundle (OpenVINO runs it)"
"$APP" --library "$library" tag --device cpu | tee "$smoke/tag.log"
if compgen -G "$smoke/cache/backbones/*.onnx" >/dev/null; then
    echo "build.sh: the first tag exported the model again instead of using the bundle's export" >&2
    exit 1
fi
# OpenVINO finds its CPU plugin by file path: a bundle that lost it would quietly fall back
# to ONNX Runtime, so say so when the build environment had OpenVINO.
if "$PYTHON" -c "import openvino" 2>/dev/null && ! grep -q "OpenVINO on CPU" "$smoke/tag.log"; then
    echo "build.sh: the bundle did not run the network with OpenVINO" >&2
    exit 1
fi
"$APP" --library "$library" export --format csv | tee "$smoke/labels.csv"
tagged=$(tail -n +2 "$smoke/labels.csv" | awk -F, '$2 != ""' | wc -l)
[[ "$tagged" -ge 1 ]] || { echo "build.sh: the bundle tagged no photo" >&2; exit 1; }

step "export the model in a child process, as the app does (children must start inside the bundle)"
"$APP" --library "$library" export-model -o "$smoke/model" | tee "$smoke/model.log"
for name in model.onnx model.torchscript.pt model.json; do
    [[ -s "$smoke/model/$name" ]] || { echo "build.sh: the bundle's model export wrote no $name" >&2; exit 1; }
done

step "the GUI starts and keeps running (stopped after 20 s)"
set +e
timeout 20 "$APP" --library "$smoke/gui-library" >"$smoke/gui.log" 2>&1
status=$?
set -e
if [[ $status -ne 124 ]]; then
    cat "$smoke/gui.log" >&2
    echo "build.sh: the GUI exited with status $status instead of running" >&2
    exit 1
fi

step "result"
du -sh "$DIST/tagger"
echo "smoke test passed: $APP"
