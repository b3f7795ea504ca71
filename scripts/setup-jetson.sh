#!/bin/sh
# Set up a fresh Jetson Nano (JetPack 4.6.x: L4T R32.6/R32.7, Ubuntu 18.04, Python 3.6) for the
# device side of this pipeline, then run `pipeline.py doctor`.
#
#   sh scripts/setup-jetson.sh [--dry-run] [BUNDLE]
#
# Why each step (docs/device.md has the whole story):
#  - apt: python3-dev (pycuda's build needs Python.h), libjpeg-dev and zlib1g-dev (Pillow, should pip
#    ever build it), python3-pip.
#  - pip: Ubuntu 18.04's pip 9 predates manylinux2014 (pip 19.3), the only wheels numpy 1.19.4 and
#    Pillow 8.4.0 have for Python 3.6 on aarch64, so pip 9 builds them from source. pip 21.3.1 is the
#    newest release that runs on Python 3.6; it is installed for this user only (--user).
#  - numpy first: pycuda 2022.1's build imports it. nvcc on PATH: pycuda's build finds CUDA by it.
# Idempotent: what is already there is not installed again. --dry-run prints every command that
# would change the machine and runs none of them (read-only probes still run).
set -eu

DRY_RUN=0
BUNDLE=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "setup-jetson: unknown option $arg (use --dry-run or --help)" >&2; exit 2 ;;
        *) BUNDLE="$arg" ;;
    esac
done

HERE=$(cd "$(dirname "$0")/.." && pwd)
RELEASE_FILE=${SETUP_JETSON_RELEASE_FILE:-/etc/nv_tegra_release}
CUDA_BIN=${SETUP_JETSON_CUDA_BIN:-/usr/local/cuda/bin}
PIP_VERSION=21.3.1
NUMPY_VERSION=1.19.4
APT_PACKAGES="python3-dev libjpeg-dev zlib1g-dev python3-pip"

say() { printf '%s\n' "setup-jetson: $*"; }
fail() { printf '%s\n' "setup-jetson: error: $*" >&2; exit 1; }

# run CMD...: print it, and run it unless --dry-run.
run() {
    printf '+ %s\n' "$*"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

# 1. Which board and JetPack is this?
[ -r "$RELEASE_FILE" ] || fail "$RELEASE_FILE not found: this is not a Jetson with L4T (run this on the Nano)"
release=$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\),.*/\1.\2/p' "$RELEASE_FILE" | head -n 1)
case "$release" in
    32.6.1) jetpack=4.6 ;;
    32.7.1) jetpack=4.6.1 ;;
    32.7.2) jetpack=4.6.2 ;;
    32.7.3) jetpack=4.6.3 ;;
    32.7.4) jetpack=4.6.4 ;;
    32.7.5) jetpack=4.6.5 ;;
    32.7.6) jetpack=4.6.6 ;;
    32.6*|32.7*) jetpack="4.6.x" ;;
    "") fail "cannot read the L4T release from $RELEASE_FILE" ;;
    *) fail "found L4T R$release; this script is for JetPack 4.6.x (L4T R32.6/R32.7), the Jetson Nano's last JetPack" ;;
esac
say "found L4T R$release (JetPack $jetpack)"

# 2. apt packages the builds need (only those missing).
missing=""
for package in $APT_PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
if [ -n "$missing" ]; then
    run sudo apt-get update
    # shellcheck disable=SC2086 # one word per package
    run sudo apt-get install -y $missing
else
    say "apt packages present: $APT_PACKAGES"
fi

# 3. pip 21.3.1 for this user, unless it (or newer) is already there.
pip_version=$(python3 -m pip --version 2>/dev/null | sed -n 's/^pip \([0-9.]*\).*/\1/p')
if [ "$pip_version" = "$PIP_VERSION" ]; then
    say "pip $pip_version present"
else
    say "pip ${pip_version:-missing} -> $PIP_VERSION (the newest for Python 3.6, with manylinux2014 wheels)"
    run python3 -m pip install --user "pip==$PIP_VERSION"
fi

# 4. numpy first (pycuda's build imports it), then the rest, with nvcc on PATH.
[ -x "$CUDA_BIN/nvcc" ] || fail "$CUDA_BIN/nvcc not found: install JetPack's CUDA (sudo apt-get install nvidia-jetpack)"
PATH="$PATH:$CUDA_BIN"
export PATH
run python3 -m pip install --user "numpy==$NUMPY_VERSION"
run python3 -m pip install --user -r "$HERE/requirements-jetson.txt"

# 5. Is everything there? (doctor exits non-zero, naming the fix, when not)
if [ -n "$BUNDLE" ]; then
    run python3 "$HERE/pipeline.py" doctor "$BUNDLE"
else
    run python3 "$HERE/pipeline.py" doctor
fi
