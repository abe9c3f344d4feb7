# Helpers of tests/hostenv/*.sh. Source it after setting PROG (the message prefix).
# shellcheck shell=bash

say() { printf '%s: %s\n' "${PROG:-hostenv}" "$*"; }
die() {
    printf '%s: ERROR: %s\n' "${PROG:-hostenv}" "$*" >&2
    exit 1
}

# A pid file whose process is alive.
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops the process of a pid file (TERM, then KILL after 5 s) and removes the file.
stop_pidfile() {
    local pidfile="$1" pid
    if alive "$pidfile"; then
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        say "stopped $(basename "$pidfile" .pid) (pid $pid)"
    fi
    rm -f "$pidfile"
}

# Without udev nobody gives /dev/kvm its usual root:kvm 0660 (Debian's udev rule), so it
# stays root-only. libvirtd then finds at every capabilities lookup that the QEMU user
# (libvirt-qemu, in group kvm) cannot use KVM although its cached probe said it could, and
# probes QEMU again: ~4 s per `virsh version`, ~56 s per `virsh create`. With the usual
# mode a lookup is instant. Changes nothing when the mode is already right.
fix_kvm_permissions() {
    [ -c /dev/kvm ] || return 0
    getent group kvm >/dev/null 2>&1 || return 0
    if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
        chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
        say "gave /dev/kvm its usual group kvm, mode 0660 (no udev here)"
    fi
}
