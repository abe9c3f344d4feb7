#!/usr/bin/env bash
# Starts the machine's own libvirt daemons (virtlogd, then libvirtd: the qemu:///system
# instance) by hand, since this machine kind has no systemd. Idempotent: does nothing when
# `virsh -c qemu:///system version` already answers. Needs root and the packages of
# scripts/install-deps.sh. Leaves the daemons running (they are the machine's, not a test's).
# Also gives /dev/kvm its usual mode when udev is missing (see fix_kvm_permissions in lib.sh).
#
#   tests/hostenv/start-libvirtd.sh [--timeout SECONDS]   (default 20)
set -euo pipefail

timeout=20
while [ $# -gt 0 ]; do
    case "$1" in
    --timeout)
        timeout="${2:?--timeout needs a value}"
        shift 2
        ;;
    -h | --help)
        awk 'NR > 1 { if (!/^#/) exit; print }' "$0"
        exit 0
        ;;
    *)
        printf 'ERROR: unknown argument %s\n' "$1" >&2
        exit 2
        ;;
    esac
done

PROG=start-libvirtd
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
answers() { virsh -c qemu:///system version >/dev/null 2>&1; }

command -v virsh >/dev/null 2>&1 || die "virsh not found: run scripts/install-deps.sh"
# Also when libvirtd already runs: a wrong mode makes every domain start take a minute.
if [ "$(id -u)" -eq 0 ]; then fix_kvm_permissions; fi
if answers; then
    say "libvirtd already answers on qemu:///system"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "libvirtd is not running and only root can start the system instance"
command -v libvirtd >/dev/null 2>&1 || die "libvirtd not found: run scripts/install-deps.sh"

# libvirtd hands the QEMU console/serial logs to virtlogd; without it domains fail to start.
if alive /run/virtlogd.pid; then
    say "virtlogd already running (pid $(cat /run/virtlogd.pid))"
else
    virtlogd -d || die "virtlogd -d failed"
    say "virtlogd started"
fi
if alive /run/libvirtd.pid; then
    say "libvirtd running (pid $(cat /run/libvirtd.pid)) but not answering yet; waiting"
else
    libvirtd -d || die "libvirtd -d failed"
    say "libvirtd started"
fi

deadline=$((SECONDS + timeout))
until answers; do
    [ $SECONDS -lt $deadline ] || die "libvirtd does not answer on qemu:///system after ${timeout}s"
    sleep 0.2
done
say "$(virsh -c qemu:///system version | grep -i 'running hypervisor' || echo 'libvirtd answers')"
