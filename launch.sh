#!/usr/bin/env bash
# Wan Compat launcher.
#   ./launch.sh [app args]     set up .venv when needed, then start the web app
#   ./launch.sh test [pytest args]   set up .venv with the test extras and run the test suite
# Environment:
#   TORCH_VERSION     torch release to install (default below; empty: let pip choose)
#   TORCH_INDEX_URL   wheel index for torch (used with --index-url). Default: with an NVIDIA GPU,
#                     PyTorch's index of the build for its driver (cu130 for 580+, else cu126;
#                     see launcher/launch_helper.py), otherwise PyPI. "pypi" forces PyPI.
#   PYTHON            the Python (3.10+, 64-bit) to create .venv with
#   WAN_COMPAT_ALLOW_CPU=1    keep a torch that cannot use the NVIDIA GPU
#   WAN_COMPAT_SETUP_ONLY=1   stop after the set-up (used by the tests)
set -euo pipefail

# The defaults, in one place (the driver-to-build table is in launcher/launch_helper.py).
DEFAULT_TORCH_VERSION=2.13.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.install-stamp"
HELPER="$ROOT/launcher/launch_helper.py"
TORCH_VERSION="${TORCH_VERSION-$DEFAULT_TORCH_VERSION}"
PIP_NOISE="Location '?[^ ]*'? is ignored"

MODE=app
if [ "${1:-}" = "test" ]; then
    MODE=test
    shift
fi

say() { printf '[launch] %s\n' "$*" >&2; }
die() { printf '[launch] %s\n' "$*" >&2; exit 1; }

python_ok() {  # is "$1" a 64-bit Python 3.10 or newer that runs?
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) and sys.maxsize > 2**32 else 1)' >/dev/null 2>&1
}

is_32bit_python() {  # is "$1" a Python 3.10+ that is 32-bit (torch has no 32-bit builds)?
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) and sys.maxsize <= 2**32 else 1)' >/dev/null 2>&1
}

find_python() {  # prints the first usable Python; says why a PYTHON or a 32-bit one was passed over
    local candidate wanted="${PYTHON:-}"
    wanted="${wanted//\"/}"
    if [ -n "$wanted" ] && ! { command -v "$wanted" >/dev/null 2>&1 && python_ok "$wanted"; }; then
        say "PYTHON is set to $wanted, which does not run a 64-bit Python 3.10 or newer; looking for another Python."
    fi
    for candidate in "$wanted" python3 python3.12 python3.11 python3.13 python3.10 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
        if is_32bit_python "$candidate"; then
            say "$(command -v "$candidate") is a 32-bit Python; torch exists only for 64-bit Python, so it is skipped."
        fi
    done
    return 1
}

venv_ok() {  # does .venv's Python run, and (before its first install) its pip?
    python_ok "$PY" && { [ -f "$STAMP" ] || "$PY" -m pip --version >/dev/null 2>&1; }
}

create_venv() {  # $1: the base Python
    say "Creating .venv with $1 ($("$1" -c 'import platform; print(platform.python_version())'))"
    if ! "$1" -m venv "$VENV"; then
        rm -rf "$VENV"
        die "Could not create .venv with $1. On Debian/Ubuntu install the venv module (sudo apt-get install python3-venv), then run ./launch.sh again."
    fi
}

# pip install, showing pip's output (progress for torch), without the "Location ... is
# ignored" noise; on failure the helper names the likely cause from pip's output.
pip_install() {  # $1: what is installed, for the messages; then pip's arguments
    local what="$1" log status=0
    shift
    log="$(mktemp)"
    "$PY" -m pip install --disable-pip-version-check "$@" >&2 \
        2> >(tee "$log" | { grep -vE "$PIP_NOISE" || true; } >&2) || status=$?
    if [ -n "${!-}" ]; then wait "$!" 2>/dev/null || true; fi  # let the error filter finish writing
    if [ "$status" != 0 ]; then
        "$PY" "$HELPER" explain-pip "$log" "$what" || true
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

# The sha256 of what an install depends on; a stamp holding it means nothing changed.
install_key() {  # $1: app|test
    local files=(requirements.txt)
    [ "$1" = test ] && files+=(requirements-test.txt)
    "$PY" "$HELPER" key "$1" "$TORCH_VERSION" "$TORCH_INDEX_URL" "${files[@]}"
}

install() {
    if [ -z "${PREFLIGHT_DONE:-}" ]; then "$PY" "$HELPER" preflight "$ROOT" || exit 1; fi
    local torch_spec="torch"
    [ -n "$TORCH_VERSION" ] && torch_spec="torch==$TORCH_VERSION"
    local torch_args=("$torch_spec")
    # --index-url, not --extra-index-url: a build missing from the index must fail, not
    # quietly become PyPI's.
    [ -n "$TORCH_INDEX_URL" ] && torch_args+=(--index-url "$TORCH_INDEX_URL")
    if "$PY" "$HELPER" build-differs "$TORCH_INDEX_URL"; then
        say "Replacing the installed torch with the build from $TORCH_INDEX_URL"
        "$PY" -m pip uninstall -q -y torch >&2 || true
    fi
    say "Installing $torch_spec from ${TORCH_INDEX_URL:-PyPI} (the first time takes a few minutes)"
    pip_install torch "${torch_args[@]}"
    "$PY" "$HELPER" cuda-check "$TORCH_INDEX_URL" || exit 1
    local req_args=(-r requirements.txt) what="requirements.txt"
    if [ "$MODE" = test ]; then
        req_args+=(-r requirements-test.txt)
        what="requirements.txt and requirements-test.txt"
    fi
    say "Installing the packages in $what"
    pip_install "the packages in $what" -q "${req_args[@]}"
}

# --- the virtual environment ------------------------------------------------------------
if [ -e "$VENV" ] && ! venv_ok; then
    say ".venv is incomplete (its Python or pip does not run, e.g. after an interrupted first start); recreating it."
    rm -rf "$VENV"
fi
if [ ! -x "$PY" ]; then
    BASE="$(find_python)" || die "A 64-bit Python 3.10 or newer was not found. Install it (e.g. \`sudo apt-get install python3\`, or from python.org), or set PYTHON=/path/to/python3.11, then run ./launch.sh again."
    "$BASE" "$HELPER" preflight "$ROOT" || exit 1
    PREFLIGHT_DONE=1
    create_venv "$BASE"
fi

TORCH_INDEX_URL="$("$PY" "$HELPER" index)"
APP_KEY="$(install_key app)"
NEEDED="$APP_KEY"
[ "$MODE" = test ] && NEEDED="$(install_key test)"
if ! { [ -f "$STAMP" ] && grep -qxF "$NEEDED" "$STAMP"; }; then
    rm -f "$STAMP"
    install
    # A test install also satisfies the app, so it records both keys.
    if [ "$MODE" = test ]; then printf '%s\n%s\n' "$APP_KEY" "$NEEDED"; else printf '%s\n' "$APP_KEY"; fi > "$STAMP"
fi

export GRADIO_ANALYTICS_ENABLED="${GRADIO_ANALYTICS_ENABLED:-False}"

if [ "$MODE" = app ]; then
    [ "${WAN_COMPAT_SETUP_ONLY:-}" = 1 ] && exit 0
    exec "$PY" app.py "$@"
fi

# --- tests ------------------------------------------------------------------------------
# Debian packages some tests need: chromium (browser tests), wine and mingw-w64 (launch.bat
# run under Wine's cmd). Installed when this runs as root (never browsers from playwright);
# when one is missing its tests are skipped, the reason in WAN_COMPAT_NO_BROWSER / _NO_WINE.
apt_get_for_tests() {  # Debian package names
    [ "$#" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
    say "Installing Debian's $* for the tests"
    local apt_log
    apt_log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >"$apt_log" 2>&1; then
        tail -n 5 "$apt_log" >&2
        say "apt-get could not install $*."
    fi
    rm -f "$apt_log"
}

wine_ready() { command -v wine >/dev/null 2>&1 && command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; }

missing=()
if [ ! -x /usr/bin/chromium ] && [ -z "${WAN_COMPAT_NO_BROWSER:-}" ]; then missing+=(chromium); fi
if ! wine_ready && [ -z "${WAN_COMPAT_NO_WINE:-}" ]; then missing+=(wine gcc-mingw-w64-x86-64-win32); fi
apt_get_for_tests ${missing[@]+"${missing[@]}"}  # bash 3.2 (macOS) calls an empty array unbound
if [ ! -x /usr/bin/chromium ] && [ -z "${WAN_COMPAT_NO_BROWSER:-}" ]; then
    reason="/usr/bin/chromium is missing: install Debian's chromium (sudo apt-get install chromium) to run the browser tests"
    say "Browser tests will be skipped: $reason."
    export WAN_COMPAT_NO_BROWSER="$reason"
fi
if ! wine_ready && [ -z "${WAN_COMPAT_NO_WINE:-}" ]; then
    reason="wine or mingw-w64 is missing: install them (sudo apt-get install wine gcc-mingw-w64-x86-64-win32) to run launch.bat under Wine"
    say "launch.bat tests will be skipped: $reason."
    export WAN_COMPAT_NO_WINE="$reason"
fi
[ "${WAN_COMPAT_SETUP_ONLY:-}" = 1 ] && exit 0

export HF_HUB_OFFLINE=1
# Lint first (settings in pyproject.toml); the tests run either way, and either failing fails the run.
lint=0
"$PY" -m ruff check --quiet . || { lint=1; say "ruff found the problems above (rules in pyproject.toml); running the tests anyway."; }
"$PY" -m pytest -q tests "$@" || exit $?
exit "$lint"
