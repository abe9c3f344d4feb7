#!/usr/bin/env bash
# Checks by hand-free means that this machine can run the hypervisor tests, and prints how
# long each libvirt operation takes on the test guest: starts libvirtd, builds the guest,
# then on the machine's libvirtd create (type qemu, direct kernel boot, CONTEXT CD),
# suspend/resume, save/restore, reboot, reset, ACPI shutdown, destroy; then two namespace
# hosts with their own libvirtd: live migration both ways and save on one + restore on the
# other through a shared directory. Cleans up everything it started (also on failure).
#
#   tests/hostenv/selftest.sh [--guest-dir DIR] [--subnet 10.X.Y] [--keep]
#
# --guest-dir: where the guest is built (default /var/tmp/one-rs-guest, cached);
# --subnet: the /24 of the namespace hosts (default 10.253.77; .1 bridge, .2 and .3 hosts);
# --keep: leave the work directory (serial logs) for inspection. Needs root. ~1-2 minutes.
set -euo pipefail
PROG=selftest
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

guest_dir=/var/tmp/one-rs-guest subnet=10.253.77 keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --guest-dir) guest_dir="${2:?}" && shift ;;
    --subnet) subnet="${2:?}" && shift ;;
    --keep) keep=1 ;;
    -h | --help) awk 'NR > 1 { if (!/^#/) exit; print }' "$0" && exit 0 ;;
    *) die "unknown argument $1" ;;
    esac
    shift
done
[ "$(id -u)" -eq 0 ] || die "needs root"

work="$(mktemp -d /var/tmp/one-rs-hostenv-selftest.XXXXXX)"
chmod 0755 "$work" # QEMU runs as libvirt-qemu and reads the ISO, writes no file here
dom="hostenv-selftest-$$"
bridge="hostenvst0"
V=(virsh -q -c qemu:///system)
A="qemu+tcp://$subnet.2/system"
B="qemu+tcp://$subnet.3/system"
failed=0

cleanup() {
    set +e
    for uri in qemu:///system "$A" "$B"; do
        virsh -c "$uri" destroy "$dom" >/dev/null 2>&1
    done
    rm -f "/var/log/libvirt/qemu/$dom.log" # the machine libvirtd's log of the domain
    "$here/netns-host.sh" down stA --dir "$work/stA" --bridge "$bridge" >/dev/null 2>&1
    "$here/netns-host.sh" down stB --dir "$work/stB" --bridge "$bridge" >/dev/null 2>&1
    if [ $keep -eq 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# wait_for PATTERN COUNT TIMEOUT: until the serial log $log holds COUNT lines matching it.
wait_for() {
    local deadline=$((SECONDS + $3))
    until [ "$(grep -c "$1" "$log" 2>/dev/null || true)" -ge "$2" ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}
gone() { ! virsh -c "$1" domstate "$dom" >/dev/null 2>&1; }
wait_gone() {
    local deadline=$((SECONDS + $2))
    until gone "$1"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}
row() { printf '  %-52s %s\n' "$1" "$2"; }
check() { # check NAME COMMAND...: runs it, prints OK/FAILED with the time taken
    local t0 name="$1"
    shift
    t0="$(now)"
    if "$@"; then row "$name" "ok  $(since "$t0") s"; else
        row "$name" "FAILED after $(since "$t0") s"
        failed=1
    fi
}

"$here/start-libvirtd.sh" >/dev/null
"$here/../guest/build-guest.sh" "$guest_dir" >/dev/null
# shellcheck disable=SC1091
. "$guest_dir/guest.env"

mkdir -p "$work/ctx"
cat >"$work/ctx/context.sh" <<'EOF'
ETH0_IP='192.168.77.2'
ETH0_MASK='255.255.255.0'
SET_HOSTNAME='selftest'
ONE_GUEST_HEARTBEAT='1'
EOF
genisoimage -quiet -V CONTEXT -J -R -o "$work/context.iso" "$work/ctx"
chmod 0644 "$work/context.iso"

# $1: the bridge of the NIC inside the host ("" = no NIC), $2: the serial log.
domain_xml() {
    cat <<EOF
<domain type='qemu'>
  <name>$dom</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST_KERNEL</kernel><initrd>$GUEST_INITRD</initrd><cmdline>$GUEST_CMDLINE</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='$work/context.iso'/><target dev='hda' bus='ide'/><readonly/></disk>
$([ -z "$1" ] || echo "    <interface type='bridge'><source bridge='$1'/><model type='virtio'/></interface>")
    <serial type='pty'><log file='$2' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
EOF
}

alive_count() { grep -c ONE-GUEST-ALIVE "$log" 2>/dev/null || true; }
# Heartbeats continue: the guest runs (again) after an operation.
heartbeat_resumes() { wait_for ONE-GUEST-ALIVE $(($(alive_count) + 1)) "$1"; }
paused_no_heartbeat() {
    local n
    n="$(alive_count)"
    sleep 3
    [ "$(alive_count)" -eq "$n" ]
}

say "machine libvirtd (qemu:///system), guest $GUEST_KERNEL_RELEASE"
log="$work/serial.log"
domain_xml "" "$log" >"$work/dom.xml"
t0="$(now)"
check "virsh create" "${V[@]}" create "$work/dom.xml"
check "  ... boot marker (from create)" wait_for ONE-GUEST-BOOT 1 60
check "  ... READY with the context (from create)" wait_for "ONE-GUEST-READY ETH0_IP=192.168.77.2 HOSTNAME=selftest CONTEXT=yes" 1 60
row "  create -> READY" "$(since "$t0") s"
check "suspend" "${V[@]}" suspend "$dom"
check "  ... no heartbeat while paused (3 s)" paused_no_heartbeat
check "resume" "${V[@]}" resume "$dom"
check "  ... heartbeat again" heartbeat_resumes 10
rm -f "$work/dom.save"
check "save" "${V[@]}" save "$dom" "$work/dom.save"
check "restore" "${V[@]}" restore "$work/dom.save"
check "  ... heartbeat again" heartbeat_resumes 10
check "reboot (ACPI)" "${V[@]}" reboot "$dom"
check "  ... boots again" wait_for ONE-GUEST-BOOT 2 60
check "  ... READY again" wait_for ONE-GUEST-READY 2 60
check "reset" "${V[@]}" reset "$dom"
check "  ... boots again" wait_for ONE-GUEST-BOOT 3 60
check "  ... READY again" wait_for ONE-GUEST-READY 3 60
check "shutdown (ACPI)" "${V[@]}" shutdown "$dom"
check "  ... guest saw it" wait_for ONE-GUEST-POWEROFF 1 30
check "  ... domain gone" wait_gone qemu:///system 60
check "create again" "${V[@]}" create "$work/dom.xml"
check "destroy" "${V[@]}" destroy "$dom"

say "two namespace hosts with their own libvirtd ($subnet.2, $subnet.3)"
ssh-keygen -q -t ed25519 -N '' -f "$work/id_ed25519"
check "netns-host.sh up stA --libvirtd" "$here/netns-host.sh" up stA --dir "$work/stA" --ip "$subnet.2/24" \
    --bridge "$bridge" --authorized-keys "$work/id_ed25519.pub" --libvirtd
check "netns-host.sh up stB --libvirtd" "$here/netns-host.sh" up stB --dir "$work/stB" --ip "$subnet.3/24" \
    --bridge "$bridge" --authorized-keys "$work/id_ed25519.pub" --libvirtd
for h in stA stB; do
    "$here/netns-host.sh" exec --dir "$work/$h" sh -c 'ip link add br0 type bridge && ip link set br0 up'
done
ssh_to() { # ssh_to HOSTDIR CMD: as a client with the test key and the host's own key
    # shellcheck disable=SC1091
    (. "$1/host.env" && printf '%s %s\n' "$HOST_IP" "$HOST_KEY_PUB" >"$work/known_hosts" &&
        ssh -q -i "$work/id_ed25519" -o UserKnownHostsFile="$work/known_hosts" -o BatchMode=yes \
            -p "$SSH_PORT" "root@$HOST_IP" "$2")
}
own_uuid() { ssh_to "$1" 'virsh -c qemu:///system sysinfo >/dev/null 2>&1; virsh -c qemu:///system capabilities' |
    sed -n 's:.*<uuid>\(.*\)</uuid>.*:\1:p' | head -n 1; }
distinct_hosts() { [ "$(own_uuid "$work/stA")" != "$(own_uuid "$work/stB")" ]; }
check "ssh into each host; distinct libvirt host UUIDs" distinct_hosts
log="$work/serial-hosts.log"
domain_xml br0 "$log" >"$work/dom-br.xml"
check "create on stA (NIC on the host's own br0)" virsh -q -c "$A" create "$work/dom-br.xml"
check "  ... READY" wait_for ONE-GUEST-READY 1 60
tap_on_br0() { "$here/netns-host.sh" exec --dir "$work/stA" bridge link | grep -q 'master br0'; }
check "  ... its tap is on stA's br0" tap_on_br0
check "live migrate stA -> stB (qemu+tcp)" virsh -q -c "$A" migrate --live "$dom" "$B"
check "  ... heartbeat on stB" heartbeat_resumes 10
check "live migrate stB -> stA" virsh -q -c "$B" migrate --live "$dom" "$A"
check "  ... heartbeat on stA" heartbeat_resumes 10
rm -f "$work/dom.save"
check "save on stA to the shared directory" virsh -q -c "$A" save "$dom" "$work/dom.save"
check "restore on stB" virsh -q -c "$B" restore "$work/dom.save"
check "  ... heartbeat on stB" heartbeat_resumes 10
check "destroy on stB" virsh -q -c "$B" destroy "$dom"

if [ $failed -ne 0 ]; then
    keep=1
    die "some checks failed (serial log and hosts' logs kept in $work)"
fi
say "all checks passed"
