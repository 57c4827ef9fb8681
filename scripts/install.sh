#!/usr/bin/env bash
# Install sam-detect with everything its tests need, into the active Python environment.
#
#   bash scripts/install.sh
#
# torch and torchvision come from the package registry as a matching pair (their CUDA build
# also runs on a CPU; a CPU-only torch cannot load the registry's torchvision, which sam2 and
# open_clip need). sam2 ships only as source and needs torch at build time, so it is built
# against the torch installed here (no build isolation, no CUDA extension: SAM2 runs without it).
set -euo pipefail
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."

"$PY" -m pip install "torch==2.14.1" "torchvision==0.29.2"
SAM2_BUILD_CUDA=0 "$PY" -m pip install --no-build-isolation "sam2==1.1.0"
"$PY" -m pip install -e '.[dev,models]'

# The browser tests drive Debian's Chromium through Playwright (never `playwright install`,
# which downloads a browser). Installed when this runs as root on a Debian-like system.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || echo "warning: could not install chromium; the browser tests will be skipped" >&2
fi
echo "sam-detect installed: $("$PY" -m sam_detect --version 2>/dev/null || sam-detect --version)"
