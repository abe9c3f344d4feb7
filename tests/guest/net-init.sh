# The test guest's network side, sourced by its /init (tests/guest/build-guest.sh) right
# after ONE-GUEST-READY, with context.sh already read. busybox sh. It does what OpenNebula's
# one-context packages do that the network tests look at, and reports on the console:
#
#   ONE-GUEST-NET IP=<eth0's> HOSTNAME=<name> SSH_KEY_SHA256=<sha256 of authorized_keys|none>
#        once: the SSH_PUBLIC_KEY of the context written to /root/.ssh/authorized_keys
#   ONE-GUEST-NICS <iface>=<mac>/<ip>[,...] ... CONTEXT=<first 12 hex of sha256(context.sh)>
#        at boot and whenever a NIC comes or goes or the context CD changes (NIC hotplug,
#        updateconf): the context is read again and every ETHn_IP set on the NIC whose MAC
#        is ETHn_MAC
#   ONE-GUEST-CONTEXT-UPDATE KEY='value'   each line of a changed context.sh
#   ONE-GUEST-PING <ip> ok|fail SEQ=<n>    every ONE_GUEST_PING_INTERVAL seconds (1) for each
#        address of ONE_GUEST_PING (context)
#   ONE-GUEST-SPOOF IP=<ip>                the context's ONE_GUEST_SPOOF_IP replaces eth0's
#        leased address (to show that anti-spoofing drops its traffic)

net_sha() { sha256sum "$1" 2>/dev/null | cut -c1-64; }

# Copies context.sh from the CONTEXT CD to /tmp/context.new; 1 when there is none. The CD
# is never left mounted: a hotplug swaps the media under it.
net_read_context() {
    umount /mnt 2>/dev/null
    for d in /dev/sr0 /dev/sr1 /dev/sr2 /dev/sr3; do
        [ -b "$d" ] || continue
        mount -t iso9660 -o ro "$d" /mnt 2>/dev/null || continue
        if [ -f /mnt/context.sh ]; then
            cp /mnt/context.sh /tmp/context.new
            umount /mnt
            return 0
        fi
        umount /mnt
    done
    return 1
}

# Forgets every ETHn_* variable (a detached NIC's are gone from the new context), reads it.
net_load_context() {
    for v in $(set | sed -n 's/^\(ETH[0-9][0-9]*_[A-Z0-9_]*\)=.*/\1/p'); do
        unset "$v"
    done
    unset ONE_GUEST_SPOOF_IP ONE_GUEST_PING
    . /tmp/context.sh
}

# The interface whose MAC is $1, else $2.
net_dev_of() {
    want="$(echo "$1" | tr A-F a-f)"
    for a in /sys/class/net/*/address; do
        [ "$(cat "$a")" = "$want" ] && { basename "$(dirname "$a")"; return; }
    done
    echo "$2"
}

net_configure() {
    n=0
    while [ $n -lt 8 ]; do
        eval "nip=\${ETH${n}_IP:-} nmac=\${ETH${n}_MAC:-} nmask=\${ETH${n}_MASK:-255.255.255.0}"
        if [ -n "$nip" ]; then
            dev="$(net_dev_of "$nmac" "eth$n")"
            if [ -e "/sys/class/net/$dev" ]; then
                if [ $n -eq 0 ] && [ -n "${ONE_GUEST_SPOOF_IP:-}" ]; then
                    nip="$ONE_GUEST_SPOOF_IP"
                    echo "ONE-GUEST-SPOOF IP=$nip"
                fi
                eval "$(ipcalc -p "$nip" "$nmask")"
                if ! ip -4 addr show dev "$dev" | grep -q "inet $nip/"; then
                    ip addr flush dev "$dev"
                    ip link set "$dev" up
                    ip addr add "$nip/$PREFIX" dev "$dev"
                fi
            fi
        fi
        n=$((n + 1))
    done
}

net_report() {
    line=""
    for d in /sys/class/net/*; do
        i="$(basename "$d")"
        [ "$i" = lo ] && continue
        ips="$(ip -4 -o addr show dev "$i" | awk '{print $4}' | cut -d/ -f1 | tr '\n' ',' | sed 's/,$//')"
        line="$line $i=$(cat "$d/address")/${ips:-none}"
    done
    echo "ONE-GUEST-NICS${line} CONTEXT=$(net_sha /tmp/context.sh | cut -c1-12)"
}

umount /mnt 2>/dev/null
key_sha=none
if [ -n "${SSH_PUBLIC_KEY:-}" ]; then
    mkdir -p /root/.ssh
    printf '%s\n' "$SSH_PUBLIC_KEY" >/root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
    key_sha="$(net_sha /root/.ssh/authorized_keys)"
fi
[ -f /tmp/context.sh ] && net_configure
net_eth0="$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n 1)"
echo "ONE-GUEST-NET IP=${net_eth0} HOSTNAME=$(hostname) SSH_KEY_SHA256=${key_sha}"
net_report

(
    pseq=0
    last_nets="$(ls /sys/class/net | tr '\n' ' ')"
    last_ctx="$(net_sha /tmp/context.sh)"
    while :; do
        changed=no
        nets="$(ls /sys/class/net | tr '\n' ' ')"
        [ "$nets" = "$last_nets" ] || changed=yes
        if net_read_context && [ "$(net_sha /tmp/context.new)" != "$last_ctx" ]; then
            cp /tmp/context.new /tmp/context.sh
            last_ctx="$(net_sha /tmp/context.sh)"
            sed 's/^/ONE-GUEST-CONTEXT-UPDATE /' /tmp/context.sh
            changed=yes
        fi
        if [ $changed = yes ]; then
            net_load_context
            net_configure
            net_report
            last_nets="$nets"
        fi
        if [ -n "${ONE_GUEST_PING:-}" ]; then
            pseq=$((pseq + 1))
            for t in $ONE_GUEST_PING; do
                if ping -c 1 -W 1 "$t" >/dev/null 2>&1; then r=ok; else r=fail; fi
                echo "ONE-GUEST-PING $t $r SEQ=$pseq"
            done
        fi
        sleep "${ONE_GUEST_PING_INTERVAL:-1}"
    done
) &
