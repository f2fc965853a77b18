#!/usr/bin/env bash
# Wan Compat launcher.
#   ./launch.sh [app args]     set up .venv when needed, then start the web app
#   ./launch.sh test [pytest args]   set up .venv with the test extras and run the test suite
# Environment:
#   TORCH_VERSION     torch release to install (default 2.13.0; empty: let pip choose)
#   TORCH_INDEX_URL   wheel index for torch, e.g. https://download.pytorch.org/whl/cu128
#   PYTHON            the Python (3.10+) to create .venv with
#   WAN_COMPAT_SETUP_ONLY=1   stop after the set-up (used by the tests)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.install-stamp"
TORCH_VERSION="${TORCH_VERSION-2.13.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"

MODE=app
if [ "${1:-}" = "test" ]; then
    MODE=test
    shift
fi

say() { printf '[launch] %s\n' "$*" >&2; }
die() { printf '[launch] %s\n' "$*" >&2; exit 1; }

python_ok() {  # is "$1" a Python 3.10 or newer that runs?
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.12 python3.11 python3.13 python3.10 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

create_venv() {
    local base
    base="$(find_python)" || die "Python 3.10 or newer was not found. Install it (e.g. \`sudo apt-get install python3\`, or from python.org), or set PYTHON=/path/to/python3.11, then run ./launch.sh again."
    say "Creating .venv with $base ($("$base" -c 'import platform; print(platform.python_version())'))"
    if ! "$base" -m venv "$VENV"; then
        rm -rf "$VENV"
        die "Could not create .venv with $base. On Debian/Ubuntu install the venv module: sudo apt-get install python3-venv"
    fi
}

# pip, quiet, without the "Location ... is ignored" noise, but with real errors.
pip_install() {
    local status=0
    "$PY" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -vE "Location '?[^ ]*'? is ignored" || true; } >&2 || status=$?
    return "$status"
}

# Exit 0 when the installed torch build is not the one TORCH_INDEX_URL serves (e.g. +cpu
# installed, cu128 wanted): pip would otherwise call torch==X "already satisfied".
torch_build_differs() {
    [ -n "$TORCH_INDEX_URL" ] || return 1
    "$PY" - "$TORCH_INDEX_URL" <<'EOF'
import importlib.metadata, re, sys
tag = sys.argv[1].rstrip("/").rsplit("/", 1)[-1]
try:
    installed = importlib.metadata.version("torch")
except importlib.metadata.PackageNotFoundError:
    sys.exit(1)
known = re.fullmatch(r"cu\d+|cpu|rocm[\d.]+|xpu", tag)
sys.exit(0 if known and not installed.endswith("+" + tag) else 1)
EOF
}

# The sha256 of what an install depends on; a stamp holding it means nothing changed.
install_key() {  # $1: app|test
    local files=(requirements.txt)
    [ "$1" = test ] && files+=(requirements-test.txt)
    "$PY" - "$1" "torch=$TORCH_VERSION index=$TORCH_INDEX_URL" "${files[@]}" <<'EOF'
import hashlib, sys
h = hashlib.sha256("\n".join(sys.argv[1:3]).encode())
for name in sys.argv[3:]:
    with open(name, "rb") as f:
        h.update(f.read())
print(h.hexdigest())
EOF
}

install() {
    local torch_spec="torch"
    [ -n "$TORCH_VERSION" ] && torch_spec="torch==$TORCH_VERSION"
    local torch_args=("$torch_spec")
    # An extra index keeps the user's own index (or mirror) for torch's dependencies; pip
    # prefers the index's build because 2.13.0+cu128 sorts above a plain 2.13.0.
    [ -n "$TORCH_INDEX_URL" ] && torch_args+=(--extra-index-url "$TORCH_INDEX_URL")
    if torch_build_differs; then
        say "Replacing the installed torch with the build from $TORCH_INDEX_URL"
        "$PY" -m pip uninstall -q -y torch >&2 || true
    fi
    say "Installing $torch_spec${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL} (the first time takes a few minutes)"
    pip_install "${torch_args[@]}" || die "Installing torch failed (see above). Check your internet connection, or set TORCH_VERSION / TORCH_INDEX_URL."
    local req_args=(-r requirements.txt) what="requirements.txt"
    if [ "$MODE" = test ]; then
        req_args+=(-r requirements-test.txt)
        what="requirements.txt and requirements-test.txt"
    fi
    say "Installing the packages in $what"
    pip_install "${req_args[@]}" || die "Installing the requirements failed (see above)."
}

# --- the virtual environment ------------------------------------------------------------
if [ -e "$VENV" ] && ! python_ok "$PY"; then
    say ".venv exists but its Python does not run or is older than 3.10; recreating it."
    rm -rf "$VENV"
fi
[ -x "$PY" ] || create_venv

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
if [ ! -x /usr/bin/chromium ] && [ -z "${WAN_COMPAT_NO_BROWSER:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "Installing Debian's chromium for the browser tests"
        apt_log="$(mktemp)"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$apt_log" 2>&1; then
            tail -n 5 "$apt_log" >&2
            say "apt-get could not install chromium."
        fi
        rm -f "$apt_log"
    fi
    if [ ! -x /usr/bin/chromium ]; then
        reason="/usr/bin/chromium is missing: install Debian's chromium (sudo apt-get install chromium) to run the browser tests"
        say "Browser tests will be skipped: $reason."
        export WAN_COMPAT_NO_BROWSER="$reason"
    fi
fi
[ "${WAN_COMPAT_SETUP_ONLY:-}" = 1 ] && exit 0

export HF_HUB_OFFLINE=1
exec "$PY" -m pytest -q tests "$@"
