#!/usr/bin/env bash
# A test "hypervisor host" on this machine: a network namespace with its own address and
# its own sshd (test-owned config, host key and authorized_keys, never the system's),
# optionally with its own libvirtd. Several hosts share one test bridge in the root
# namespace, so they reach each other and the frontend (the bridge's address) without IP
# forwarding.
#
#   netns-host.sh up NAME --dir DIR --ip 10.X.Y.Z/NN [--bridge BR] [--bridge-ip A.B.C.D/NN]
#                 [--port PORT] [--authorized-keys FILE] [--libvirtd] [--mask DIR]...
#                 [--private DIR=SRC]...
#   netns-host.sh down NAME --dir DIR [--bridge BR]
#   netns-host.sh exec --dir DIR CMD...   runs CMD as the host sees the world (its network,
#                                         mounts and hostname), like an ssh session there
#
# up: creates namespace NAME (at most 11 characters) and a veth pair whose inner end is eth0
# in the namespace (address --ip, default route via the bridge address) and whose outer end
# "vh-NAME" joins bridge BR (default onetestbr0; created when missing with --bridge-ip,
# default the first address of --ip's subnet, and marked as ours with an alias; an existing
# bridge is used as it is). sshd runs inside the namespace on HOST_IP:PORT (default 22), in
# a private mount and UTS namespace: hostname NAME, an /etc/hosts naming NAME (libvirt
# resolves its hostname, and a lookup that goes to DNS from a namespace waits 10 s).
# --libvirtd: that private mount namespace also gets its own /run/libvirt, /etc/libvirt
# (host_uuid of its own, TCP listener without auth on HOST_IP, migration_host HOST_IP),
# /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt under DIR/libvirt, with its own
# virtlogd and libvirtd: a separate hypervisor host for libvirt, so live migration between
# two such hosts works; qemu:///system in an ssh session reaches it, and so does
# qemu+tcp://HOST_IP/system from anywhere on the machine. Without it the host's sessions
# reach the machine's libvirtd (tests/hostenv/start-libvirtd.sh).
# --mask DIR (repeatable, an existing directory): the host sees an empty directory there
# instead (a tmpfs over it in its private mount namespace), as a host that does not have the
# frontend's shared file system mounted at that path sees its own local directory.
# --private DIR=SRC (repeatable, both existing directories): the host sees SRC at DIR (a bind
# mount in its private mount namespace): a host-local disk at the path the frontend also
# uses, e.g. a `local` system datastore whose files each host keeps apart.
# Writes DIR/ssh_host_ed25519_key (kept across runs), DIR/sshd_config, DIR/hosts and
# DIR/host.env (NETNS, HOSTNAME, HOST_IP, SSH_PORT, BRIDGE, BRIDGE_IP, HOST_KEY_PUB,
# SSHD_PID, LIBVIRT_URI, LIBVIRTD_PID). authorized_keys: --authorized-keys FILE is copied to
# DIR/authorized_keys; without it DIR/authorized_keys is used as it is (created empty).
# Idempotent: an `up` of a host whose sshd runs does nothing.
# down: destroys the domains of the host's own libvirtd, stops its daemons, deletes the
# namespace (which deletes the veth pair) and the bridge if it is ours and has no port left.
# Only private addresses (10.0.0.0/8, 192.168.0.0/16) are accepted. Needs root.
set -euo pipefail
PROG=netns-host
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bridges this script created carry this alias; down deletes only those.
OUR_ALIAS=one-rs-test-hostenv

usage() { awk 'NR > 1 { if (!/^#/) exit; print }' "$0"; }

[ $# -ge 1 ] || {
    usage
    exit 2
}
cmd="$1"
shift
case "$cmd" in
-h | --help)
    usage
    exit 0
    ;;
exec)
    [ "${1:-}" = --dir ] && [ -n "${2:-}" ] || die "usage: exec --dir DIR CMD..."
    dir="$2"
    shift 2
    alive "$dir/sshd.pid" || die "no running host in $dir"
    exec nsenter -t "$(cat "$dir/sshd.pid")" -n -m -u "$@"
    ;;
up | down) ;;
*) die "unknown command $cmd (try --help)" ;;
esac

name="${1:-}"
[ -n "$name" ] || die "$cmd needs NAME"
shift
dir="" ip_cidr="" bridge=onetestbr0 bridge_ip="" port=22 keys="" libvirtd=0 masks="" privates=""
while [ $# -gt 0 ]; do
    case "$1" in
    --libvirtd)
        libvirtd=1
        shift
        continue
        ;;
    --dir) dir="${2:?}" ;;
    --ip) ip_cidr="${2:?}" ;;
    --bridge) bridge="${2:?}" ;;
    --bridge-ip) bridge_ip="${2:?}" ;;
    --port) port="${2:?}" ;;
    --authorized-keys) keys="${2:?}" ;;
    --mask)
        [ -d "${2:?}" ] || die "--mask $2: not a directory"
        case "$2" in *" "*) die "--mask $2: no blanks in masked paths" ;; esac
        masks="$masks $2"
        ;;
    --private)
        p_dir="${2:?}" p_dir="${p_dir%%=*}" p_src="${2#*=}"
        [ "$p_dir" != "$2" ] || die "--private $2: expected DIR=SRC"
        [ -d "$p_dir" ] || die "--private $2: $p_dir is not a directory"
        [ -d "$p_src" ] || die "--private $2: $p_src is not a directory"
        case "$2" in *" "*) die "--private $2: no blanks in paths" ;; esac
        privates="$privates $2"
        ;;
    *) die "unknown option $1 (try --help)" ;;
    esac
    shift 2
done
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
[[ "$name" =~ ^[A-Za-z0-9_-]{1,11}$ ]] || die "NAME must be 1-11 of [A-Za-z0-9_-] (interface names are short)"
[[ "$bridge" =~ ^[A-Za-z0-9_-]{1,15}$ ]] || die "bad bridge name $bridge"
[ -n "$dir" ] || die "$cmd needs --dir DIR"
veth="vh-$name"

netns_exists() { ip netns list | awk '{print $1}' | grep -qx "$name"; }
private_cidr() {
    [[ "$1" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] || return 1
    local a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} p=${BASH_REMATCH[5]} o
    for o in "${BASH_REMATCH[@]:1:4}"; do [ "$o" -le 255 ] || return 1; done
    [ "$p" -ge 8 ] && [ "$p" -le 30 ] || return 1
    [ "$a" -eq 10 ] || { [ "$a" -eq 192 ] && [ "$b" -eq 168 ]; }
}
# The first host address of a subnet (the bridge's default address).
first_address() {
    python3 -c 'import ipaddress,sys; n=ipaddress.ip_interface(sys.argv[1]).network; print(f"{next(n.hosts())}/{n.prefixlen}")' "$1"
}

# --- down ------------------------------------------------------------------------------
if [ "$cmd" = down ]; then
    if alive "$dir/libvirtd.pid"; then
        # QEMU processes outlive libvirtd: destroy the host's domains while it still answers.
        uri="$(sed -n 's/^LIBVIRT_URI=//p' "$dir/host.env" 2>/dev/null)"
        if [ -n "$uri" ]; then
            for dom in $(virsh -c "$uri" list --name 2>/dev/null); do
                virsh -c "$uri" destroy "$dom" >/dev/null && say "destroyed domain $dom"
            done
        fi
        stop_pidfile "$dir/libvirtd.pid"
    fi
    stop_pidfile "$dir/virtlogd.pid"
    stop_pidfile "$dir/sshd.pid"
    if netns_exists; then
        ip netns del "$name"
        say "deleted namespace $name"
    fi
    # The outer veth end normally goes with the namespace; remove a leftover.
    if ip link show "$veth" >/dev/null 2>&1; then ip link del "$veth"; fi
    if ip link show "$bridge" >/dev/null 2>&1 &&
        ip -d link show "$bridge" | grep -q "alias $OUR_ALIAS" &&
        [ -z "$(ls "/sys/class/net/$bridge/brif" 2>/dev/null)" ]; then
        ip link del "$bridge"
        say "deleted bridge $bridge"
    fi
    exit 0
fi

# --- up --------------------------------------------------------------------------------
[ -n "$ip_cidr" ] || die "up needs --ip A.B.C.D/NN"
private_cidr "$ip_cidr" || die "--ip $ip_cidr is not in 10.0.0.0/8 or 192.168.0.0/16 (prefix 8-30)"
[ -n "$bridge_ip" ] || bridge_ip="$(first_address "$ip_cidr")"
private_cidr "$bridge_ip" || die "--bridge-ip $bridge_ip is not a private address"
[ "${ip_cidr%/*}" != "${bridge_ip%/*}" ] || die "--ip and --bridge-ip are the same address"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad --port $port"
[ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd missing (scripts/install-deps.sh installs openssh-server)"
if [ $libvirtd -eq 1 ]; then
    command -v libvirtd >/dev/null 2>&1 || die "libvirtd missing (scripts/install-deps.sh)"
    fix_kvm_permissions
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
host_ip="${ip_cidr%/*}"

if netns_exists && alive "$dir/sshd.pid"; then
    say "$name already up (sshd pid $(cat "$dir/sshd.pid"))"
    exit 0
fi

# The bridge: ours if created here; an existing one is only used, never changed.
if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip link set "$bridge" alias "$OUR_ALIAS"
    ip addr add "$bridge_ip" dev "$bridge"
    ip link set "$bridge" up
    say "created bridge $bridge ($bridge_ip)"
elif [ ! -d "/sys/class/net/$bridge/bridge" ]; then
    die "$bridge exists and is not a bridge"
fi

netns_exists || ip netns add "$name"
if ! ip netns exec "$name" ip link show eth0 >/dev/null 2>&1; then
    ip link show "$veth" >/dev/null 2>&1 && die "$veth exists outside namespace $name"
    ip link add "$veth" type veth peer name eth0 netns "$name"
    ip link set "$veth" master "$bridge"
    ip link set "$veth" up
    ip netns exec "$name" ip link set lo up
    ip netns exec "$name" ip addr add "$ip_cidr" dev eth0
    ip netns exec "$name" ip link set eth0 up
    ip netns exec "$name" ip route add default via "${bridge_ip%/*}"
fi

# sshd: everything under DIR. StrictModes off since DIR may be under a world-writable
# /tmp; UsePAM off since no login session is needed; AuthorizedKeysFile is absolute so
# it serves every user (the tests log in as the user oned runs as).
[ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key"
if [ -n "$keys" ]; then
    cp "$keys" "$dir/authorized_keys"
else
    touch "$dir/authorized_keys"
fi
chmod 0600 "$dir/authorized_keys"
cat >"$dir/sshd_config" <<EOF
# Test sshd of namespace host $name (tests/hostenv/netns-host.sh); not the system's.
Port $port
ListenAddress $host_ip
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel INFO
EOF
# The privilege separation directory sshd insists on (the system sshd makes the same one).
mkdir -p /run/sshd
chmod 0755 /run/sshd
/usr/sbin/sshd -t -f "$dir/sshd_config" || die "sshd rejects $dir/sshd_config"
printf '127.0.0.1 localhost\n%s %s\n' "$host_ip" "$name" >"$dir/hosts"
chmod 0644 "$dir/hosts"

lv="$dir/libvirt"
if [ $libvirtd -eq 1 ] && [ ! -f "$lv/etc/libvirtd.conf" ]; then
    rm -rf "$lv"
    mkdir -p "$lv"/{etc,lib,log/qemu,cache}
    cp -a /etc/libvirt/. "$lv/etc/"
    cp -a /var/lib/libvirt/. "$lv/lib/"
    # The machine's probed QEMU capabilities stay valid (same binary): saves a ~10 s probe.
    cp -a /var/cache/libvirt/. "$lv/cache/" 2>/dev/null || true
    # Domains of the machine's libvirtd are not this host's.
    rm -rf "$lv/etc/qemu/"*.xml "$lv/etc/qemu/autostart" "$lv/etc/qemu/networks/autostart"
    # auth_tcp none: the listener is on the namespace's own private address, for tests only.
    cat >>"$lv/etc/libvirtd.conf" <<EOF

# Namespace host $name (tests/hostenv/netns-host.sh --libvirtd)
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
listen_tcp = 1
listen_tls = 0
listen_addr = "$host_ip"
auth_tcp = "none"
EOF
    cat >>"$lv/etc/qemu.conf" <<EOF

# Namespace host $name: incoming migrations on this address (not the hostname's).
migration_host = "$host_ip"
EOF
fi

# Everything of the host starts in one private mount + UTS namespace inside the network
# namespace; the daemons keep it alive, and `exec` enters it through sshd's pid.
rm -f "$dir/sshd.pid" "$dir/libvirtd.pid" "$dir/virtlogd.pid"
ip netns exec "$name" unshare -m -u --propagation private \
    env HN="$name" D="$dir" LV="$lv" WITH_LIBVIRTD="$libvirtd" MASKS="$masks" PRIVATES="$privates" bash -euc '
hostname "$HN"
mount --bind "$D/hosts" /etc/hosts
for m in $MASKS; do
    mount -t tmpfs -o size=1m,mode=0755 one-rs-mask "$m"
done
for p in $PRIVATES; do
    mount --bind "${p#*=}" "${p%%=*}"
done
if [ "$WITH_LIBVIRTD" = 1 ]; then
    mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
    mount --bind "$LV/etc" /etc/libvirt
    mount --bind "$LV/lib" /var/lib/libvirt
    mount --bind "$LV/log" /var/log/libvirt
    mount --bind "$LV/cache" /var/cache/libvirt
    virtlogd -d -p "$D/virtlogd.pid"
    libvirtd -d -l -p "$D/libvirtd.pid"
fi
/usr/sbin/sshd -f "$D/sshd_config" -E "$D/sshd.log"
'
libvirt_uri=""
for _ in $(seq 100); do
    alive "$dir/sshd.pid" && ip netns exec "$name" bash -c "exec 3<>/dev/tcp/$host_ip/$port" 2>/dev/null && break
    sleep 0.1
done
alive "$dir/sshd.pid" || die "sshd did not start (see $dir/sshd.log)"
if [ $libvirtd -eq 1 ]; then
    libvirt_uri="qemu+tcp://$host_ip/system"
    for _ in $(seq 200); do
        virsh -c "$libvirt_uri" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    virsh -c "$libvirt_uri" version >/dev/null 2>&1 || die "libvirtd of $name does not answer on $libvirt_uri (see $lv/log)"
fi

cat >"$dir/host.env" <<EOF
NETNS=$name
HOSTNAME=$name
HOST_IP=$host_ip
SSH_PORT=$port
BRIDGE=$bridge
BRIDGE_IP=${bridge_ip%/*}
HOST_KEY_PUB='$(cat "$dir/ssh_host_ed25519_key.pub")'
SSHD_PID=$(cat "$dir/sshd.pid")
LIBVIRT_URI=$libvirt_uri
LIBVIRTD_PID=$(cat "$dir/libvirtd.pid" 2>/dev/null || true)
EOF
say "$name up: ssh -p $port $host_ip${libvirt_uri:+, libvirt $libvirt_uri} (bridge $bridge ${bridge_ip%/*})"
