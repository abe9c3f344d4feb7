# Shared helpers for scripts/*.sh. Source it; it sets REPO and defines functions only.
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Debian packages the project needs now (build, run, test). Keep in sync with README.md.
# e2fsprogs: mkfs.ext4 for empty datablocks with FS; ca-certificates: https image URLs;
# curl: the upload benchmark's reference (`curl -T`); git: onecloud reconcile pulls with it.
APT_PACKAGES=(pkg-config libxml2-utils postgresql e2fsprogs ca-certificates curl git)

# Python packages for the e2e suite and the examples; pinned to versions known to work.
PY_REQUIREMENTS="$REPO/tests/requirements.txt"

# The Python virtual environment holding pyone and pytest. It lives outside the clone so
# CI runs on the same machine reuse it; override with ONE_VENV.
one_venv_dir() {
    if [ -n "${ONE_VENV:-}" ]; then
        printf '%s\n' "$ONE_VENV"
    elif is_root; then
        printf '%s\n' /var/tmp/one-rs-venv
    else
        printf '%s\n' "${XDG_CACHE_HOME:-$HOME/.cache}/one-rs-venv"
    fi
}

# A python3 able to create virtual environments (the one on PATH, else Debian's).
base_python() {
    local p
    for p in "$(command -v python3 2>/dev/null)" /usr/bin/python3; do
        [ -n "$p" ] && [ -x "$p" ] || continue
        if "$p" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# True when the venv exists and holds exactly the pinned requirements.
venv_ok() {
    local venv
    venv="$(one_venv_dir)"
    [ -x "$venv/bin/python" ] || return 1
    [ -f "$venv/.one-rs-requirements" ] || return 1
    cmp -s "$venv/.one-rs-requirements" "$PY_REQUIREMENTS" || return 1
    "$venv/bin/python" -c 'import pyone, pytest' >/dev/null 2>&1
}

# Highest installed PostgreSQL server bin directory (initdb, pg_ctl), if any.
pg_bin_dir() {
    if [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ]; then
        printf '%s\n' "$PG_BIN_DIR"
        return 0
    fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        printf '%s\n' "$d"
        return 0
    fi
    return 1
}

apt_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# The data directory of scripts/start.sh and stop.sh: $ONED_DATA_DIR (absolute, or relative
# to the repo), else var/ in the repo.
data_dir() {
    local d="${ONED_DATA_DIR:-$REPO/var}"
    case "$d" in
    /*) ;;
    *) d="$REPO/$d" ;;
    esac
    printf '%s\n' "$d"
}

# Where cargo puts its output (honours CARGO_TARGET_DIR, relative to the repo).
target_dir() {
    local t="${CARGO_TARGET_DIR:-$REPO/target}"
    case "$t" in
    /*) ;;
    *) t="$REPO/$t" ;;
    esac
    printf '%s\n' "$t"
}
