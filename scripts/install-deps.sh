#!/usr/bin/env bash
# Installs what the project needs to build, run and test it; skips what is already there,
# so a second run takes a second or two.
#
#   scripts/install-deps.sh           install (Debian packages need root; the Python
#                                     virtual environment does not)
#   scripts/install-deps.sh --check   only report what is missing; exit 1 if anything is
#
# Debian packages: pkg-config, libxml2-utils (xmllint, for tests/xsd/one_xsd_check.py), postgresql
# (initdb/pg_ctl for the throwaway clusters of the PostgreSQL test run), e2fsprogs (mkfs for
# empty datablocks), ca-certificates (https image URLs), curl (the upload benchmark),
# git (onecloud reconcile pulls with it),
# python3-venv when the python3 at hand cannot create virtual environments.
# Hypervisor hosts (KVM driver and its tests): qemu-system-x86, libvirt-daemon-system,
# libvirt-clients, libvirt-dev (the virt crate), qemu-utils (qemu-img), openssh-server
# (namespace hosts), genisoimage (CONTEXT CDs), cpio, busybox-static (the test guest,
# tests/guest/build-guest.sh), iproute2, nftables (security groups and anti-spoofing on the
# hosts), iputils-ping (network tests). libvirtd is not started here: there is no
# systemd; tests/hostenv/start-libvirtd.sh starts it.
# Web console (sunstone): nodejs and npm (when no node/npm is on PATH) to fetch its browser
# code with `npm ci` from sunstone/web/package-lock.json into sunstone/web/node_modules
# (never committed; cargo build embeds it), chromium and chromium-driver for the browser
# tests (tests/e2e/test_sunstone*.py drive Debian's browser; nothing downloads one).
# Python: pyone, pytest, pytest-timeout, selenium (pinned in tests/requirements.txt) in a virtual
# environment outside the clone: /var/tmp/one-rs-venv for root, ~/.cache/one-rs-venv
# otherwise, or $ONE_VENV.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_only=0
case "${1:-}" in
--check) check_only=1 ;;
"") ;;
-h | --help)
    sed -n '2,26p' "$0"
    exit 0
    ;;
*) die "unknown argument $1 (try --help)" ;;
esac

missing=0
export DEBIAN_FRONTEND=noninteractive

# --- Debian packages -----------------------------------------------------------------
wanted=("${APT_PACKAGES[@]}")
if ! base_python >/dev/null; then
    wanted+=(python3 python3-venv)
fi
need=()
for p in "${wanted[@]}"; do
    apt_installed "$p" || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then
    say "install-deps: Debian packages present: ${wanted[*]}"
elif [ $check_only -eq 1 ] || ! is_root; then
    say "install-deps: missing Debian packages: ${need[*]}"
    say "  install them as root: apt-get install -y --no-install-recommends ${need[*]}"
    missing=1
else
    say "install-deps: installing Debian packages: ${need[*]}"
    apt-get update
    if ! apt-get install -y --no-install-recommends "${need[@]}"; then
        die "apt-get install ${need[*]} failed"
    fi
fi

# --- Hypervisor packages ---------------------------------------------------------------
# A separate apt call: a machine may come with qemu-utils 10 from backports, which
# "Breaks" the qemu-system-common 7.2 of qemu-system-x86; installing qemu-system-x86 alone
# silently removes it. So qemu-utils always goes with them, and when apt refuses the
# combination it is pinned to qemu-system-x86's own version (a downgrade to 7.2; both
# versions make the qcow2 overlays the project needs).
HV_PACKAGES=(qemu-system-x86 libvirt-daemon-system libvirt-clients libvirt-dev qemu-utils
    openssh-server genisoimage cpio busybox-static iproute2 nftables iputils-ping)
hv_need=()
for p in "${HV_PACKAGES[@]}"; do
    apt_installed "$p" || hv_need+=("$p")
done
if [ ${#hv_need[@]} -eq 0 ]; then
    say "install-deps: hypervisor packages present: ${HV_PACKAGES[*]}"
elif [ $check_only -eq 1 ] || ! is_root; then
    say "install-deps: missing hypervisor packages: ${hv_need[*]}"
    say "  install them as root: scripts/install-deps.sh"
    missing=1
else
    say "install-deps: installing hypervisor packages: ${hv_need[*]}"
    [ ${#need[@]} -gt 0 ] || apt-get update
    case " ${hv_need[*]} " in
    *" qemu-utils "*) ;;
    *) hv_need+=(qemu-utils) ;;
    esac
    if ! apt-get install -y --no-install-recommends "${hv_need[@]}"; then
        qemu_version="$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')"
        [ -n "$qemu_version" ] && [ "$qemu_version" != "(none)" ] ||
            die "apt-get install ${hv_need[*]} failed and qemu-system-x86 has no candidate version"
        say "install-deps: apt refused the combination; retrying with qemu-utils=$qemu_version"
        pinned=()
        for p in "${hv_need[@]}"; do
            if [ "$p" = qemu-utils ]; then pinned+=("qemu-utils=$qemu_version"); else pinned+=("$p"); fi
        done
        apt-get install -y --no-install-recommends --allow-downgrades "${pinned[@]}" ||
            die "apt-get install ${pinned[*]} failed"
    fi
fi
# qemu-img has gone missing after the hypervisor install before (see above): check it.
if qemu_img="$(qemu-img --version 2>/dev/null | head -n 1)" && [ -n "$qemu_img" ]; then
    say "install-deps: $qemu_img"
elif [ $check_only -eq 0 ] && is_root; then
    say "install-deps: qemu-img missing; installing qemu-utils"
    apt-get install -y --no-install-recommends qemu-utils || die "apt-get install qemu-utils failed"
    qemu-img --version >/dev/null 2>&1 || die "qemu-img still missing after installing qemu-utils"
    say "install-deps: $(qemu-img --version | head -n 1)"
else
    say "install-deps: qemu-img not found (install qemu-utils)"
    missing=1
fi
if command -v virsh >/dev/null 2>&1; then
    if virsh -c qemu:///system version >/dev/null 2>&1; then
        say "install-deps: libvirtd answers on qemu:///system"
    else
        say "install-deps: libvirtd not running (tests/hostenv/start-libvirtd.sh starts it)"
    fi
fi

# --- Web console: browser for its tests, Node.js + npm for its browser code --------------
WEB_PACKAGES=(chromium chromium-driver)
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    WEB_PACKAGES+=(nodejs npm)
fi
web_need=()
for p in "${WEB_PACKAGES[@]}"; do
    apt_installed "$p" || web_need+=("$p")
done
if [ ${#web_need[@]} -eq 0 ]; then
    say "install-deps: web console packages present: ${WEB_PACKAGES[*]}"
elif [ $check_only -eq 1 ] || ! is_root; then
    say "install-deps: missing web console packages: ${web_need[*]}"
    say "  install them as root: apt-get install -y --no-install-recommends ${web_need[*]}"
    missing=1
else
    say "install-deps: installing web console packages: ${web_need[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${web_need[@]}" || die "apt-get install ${web_need[*]} failed"
fi
# sunstone's browser code: npm ci when node_modules is missing or older than the lockfile.
WEB_DIR="$REPO/sunstone/web"
if [ -f "$WEB_DIR/package-lock.json" ]; then
    stamp="$WEB_DIR/node_modules/.package-lock.json"
    if [ -f "$stamp" ] && [ ! "$WEB_DIR/package-lock.json" -nt "$stamp" ]; then
        say "install-deps: sunstone browser code present (sunstone/web/node_modules)"
    elif [ $check_only -eq 1 ]; then
        say "install-deps: sunstone browser code missing or out of date (npm ci in sunstone/web)"
        missing=1
    elif ! command -v npm >/dev/null 2>&1; then
        say "install-deps: npm not found: cannot fetch sunstone's browser code"
        missing=1
    else
        say "install-deps: fetching sunstone's browser code (npm ci in sunstone/web)"
        (cd "$WEB_DIR" && npm ci --no-audit --no-fund --ignore-scripts) || die "npm ci in sunstone/web failed"
        # So that cargo notices the new files even when the lockfile did not change.
        touch "$stamp"
    fi
fi

# --- Rust toolchain (comes with the machine; cannot be installed from here) ----------
for tool in cargo rustfmt cargo-clippy; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        say "install-deps: $tool not found: install the Rust toolchain (rustup, components rustfmt and clippy)"
        missing=1
    fi
done
if command -v cargo-nextest >/dev/null 2>&1; then
    say "install-deps: cargo-nextest present ($(cargo-nextest --version 2>/dev/null | head -n 1))"
else
    say "install-deps: cargo-nextest not installed: scripts/test.sh falls back to cargo test"
fi

# --- PostgreSQL server binaries and system user -----------------------------------------
if pgbin="$(pg_bin_dir)"; then
    say "install-deps: PostgreSQL server binaries in $pgbin"
    if is_root && ! id postgres >/dev/null 2>&1; then
        say "install-deps: no 'postgres' system user; the PostgreSQL tests will be skipped"
    fi
elif [ $check_only -eq 0 ] && is_root; then
    die "postgresql is installed but no /usr/lib/postgresql/*/bin/initdb was found"
fi

# --- Python virtual environment ----------------------------------------------------------
venv="$(one_venv_dir)"
if venv_ok; then
    say "install-deps: Python environment $venv is up to date ($("$venv/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("pyone", "pytest")))'))"
elif [ $check_only -eq 1 ]; then
    say "install-deps: Python environment $venv missing or out of date (pyone, pytest)"
    missing=1
else
    py="$(base_python)" || die "no python3 that can create a virtual environment (apt-get install python3-venv)"
    if [ ! -x "$venv/bin/python" ]; then
        say "install-deps: creating Python virtual environment $venv with $py"
        mkdir -p "$(dirname "$venv")"
        "$py" -m venv "$venv"
    fi
    say "install-deps: installing $(grep -v '^#' "$PY_REQUIREMENTS" | xargs) into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PY_REQUIREMENTS"
    cp "$PY_REQUIREMENTS" "$venv/.one-rs-requirements"
    venv_ok || die "the Python environment $venv still cannot import pyone and pytest"
fi

if [ $missing -ne 0 ]; then
    say "install-deps: something is missing (see above)"
    exit 1
fi
say "install-deps: all dependencies present"
