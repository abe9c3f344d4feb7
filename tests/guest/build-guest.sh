#!/usr/bin/env bash
# Builds the tiny test guest of the hypervisor tests from Debian packages (no image
# download): the kernel of Debian's linux-image-cloud-amd64 and a busybox initramfs whose
# /init reads the OpenNebula CONTEXT CD and reports on the serial console.
#
#   tests/guest/build-guest.sh [--force] OUTDIR
#
# Writes OUTDIR/vmlinuz, OUTDIR/initrd.img and OUTDIR/guest.env (shell variables:
# GUEST_KERNEL, GUEST_INITRD, GUEST_CMDLINE, GUEST_KERNEL_PACKAGE, GUEST_KERNEL_RELEASE,
# GUEST_BUILD). Cached: does nothing when they exist and were built by this version of the
# script (--force rebuilds). Safe to run concurrently (flock on OUTDIR/.lock).
# Needs: apt-get (after apt-get update), dpkg-deb, busybox-static, cpio, gzip
# (scripts/install-deps.sh installs them). Root is not needed.
#
# What the guest does (boot with GUEST_CMDLINE, the CONTEXT CD on IDE, virtio-scsi or
# virtio-blk; SATA/AHCI is not in this kernel): prints to the console (ttyS0)
#   ONE-GUEST-BOOT KERNEL=<release>     ~4 s after the domain starts (TCG)
#   ONE-GUEST-ACPI WATCH=<devices>       from now on an ACPI power-button press (virsh
#                                        shutdown, reboot) is seen; earlier ones are lost
#   ONE-GUEST-CONTEXT KEY='value'        one line per line of context.sh
#   ONE-GUEST-READY ETH0_IP=<ip or empty> HOSTNAME=<name> CONTEXT=yes|no UPTIME=<s>
#   ONE-GUEST-ALIVE SEQ=<n> UPTIME=<s> BLOCK=<devs> NET=<ifaces>   every
#                                        ONE_GUEST_HEARTBEAT seconds if the context sets it
#   ONE-GUEST-POWEROFF                   on an ACPI power-button press, then powers off
# It sets HOSTNAME/SET_HOSTNAME and ETHn_IP/ETHn_MASK/ETHn_GATEWAY (the NIC found by
# ETHn_MAC, else ethn) from context.sh. ONE_GUEST_DEBUG=1 in the context also dumps the
# input devices and modules.
#
# Disks (storage tests), from context.sh:
#   ONE_GUEST_MARK=<token> ONE_GUEST_MARK_DEV="vda vdb" (default vda): at every boot, for
#   each device, the guest reads the marker `ONE-MARK <token>:<n>` in its first sector,
#   writes `ONE-MARK <token>:<n+1>` there (n = 0 when there was none; synced to the disk)
#   and prints
#     ONE-GUEST-MARK DEV=<dev> FOUND=<token:n|none> WROTE=<token:n+1>
#   and each heartbeat also says MARK=<dev>:<what the disk holds now> (the page cache
#   dropped first, so it is the disk's content, e.g. after a restore).
#   ONE_GUEST_MOUNT="vdc": mounts each device read-only (the file system of a formatted
#   volatile disk) and prints ONE-GUEST-MOUNT DEV=<dev> FS=<type or none>.
#   ONE_GUEST_SWAP="vdd": swapon each device; prints ONE-GUEST-SWAP DEV=<dev> ON=yes|no.
# A disk is state the guest keeps across boots; everything else starts afresh.
#
# tests/guest/net-init.sh (included) adds the network reports: ONE-GUEST-NET (IP, hostname,
# SSH key applied), ONE-GUEST-NICS (NIC hotplug, new context), ONE-GUEST-PING.
set -euo pipefail

# Modules loaded at boot, with their dependencies resolved from modules.dep at build time:
# PCI virtio (NICs, disks, SCSI), the IDE CD-ROM path (ata_piix, sr_mod, isofs), SCSI
# disks, and the ACPI power button with evdev so that a shutdown request can be seen.
GUEST_MODULES=(virtio_pci virtio_net virtio_blk virtio_scsi ata_piix sr_mod sd_mod isofs button evdev)
GUEST_CMDLINE="console=ttyS0 quiet"

say() { printf 'build-guest: %s\n' "$*"; }
die() {
    printf 'build-guest: ERROR: %s\n' "$*" >&2
    exit 1
}

force=0
outdir=""
while [ $# -gt 0 ]; do
    case "$1" in
    --force) force=1 ;;
    -h | --help)
        awk 'NR > 1 { if (!/^#/) exit; print }' "$0"
        exit 0
        ;;
    -*) die "unknown option $1 (try --help)" ;;
    *)
        [ -z "$outdir" ] || die "only one OUTDIR"
        outdir="$1"
        ;;
    esac
    shift
done
[ -n "$outdir" ] || die "usage: $0 [--force] OUTDIR"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"

# The build identity: this script's content (it holds /init) and the files /init includes,
# so an edit rebuilds.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_id="$(cat "${BASH_SOURCE[0]}" "$here/net-init.sh" | sha256sum | cut -c1-16)"

cached() {
    [ -s "$outdir/vmlinuz" ] && [ -s "$outdir/initrd.img" ] && [ -s "$outdir/guest.env" ] &&
        grep -qx "GUEST_BUILD=$build_id" "$outdir/guest.env"
}

exec 9>"$outdir/.lock"
flock 9
if [ $force -eq 0 ] && cached; then
    say "up to date in $outdir"
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip flock; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/install-deps.sh)"
done
busybox=/bin/busybox
# Only the static busybox runs in an initramfs without libc (the busybox package is dynamic).
[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] &&
    [ -x "$busybox" ] || die "busybox-static is not installed (scripts/install-deps.sh)"

# The exact kernel package: the meta package's dependency (a wildcard would fetch them all).
pkg="${GUEST_KERNEL_PACKAGE:-}"
if [ -z "$pkg" ]; then
    pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')"
    [ -n "$pkg" ] || die "apt-cache knows no linux-image-cloud-amd64 (run apt-get update first)"
fi

work="$(mktemp -d "$outdir/.build.XXXXXX")"
chmod 0755 "$work" # apt-get download runs as _apt and must reach $work/dl
trap 'rm -rf "$work"' EXIT
mkdir -p "$outdir/cache"
deb="$(ls "$outdir/cache/${pkg}"_*.deb 2>/dev/null | head -n 1 || true)"
if [ -z "$deb" ]; then
    say "downloading $pkg"
    # apt drops to the _apt user to download: give it a directory it may write.
    dl="$work/dl"
    mkdir -p "$dl"
    if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
    (cd "$dl" && apt-get download -q "$pkg") || die "apt-get download $pkg failed"
    deb="$(ls "$dl/${pkg}"_*.deb | head -n 1)"
    mv "$deb" "$outdir/cache/"
    deb="$outdir/cache/$(basename "$deb")"
fi
say "kernel from $(basename "$deb")"
dpkg-deb -x "$deb" "$work/kernel"
release="$(ls "$work/kernel/lib/modules" | head -n 1)"
[ -n "$release" ] && [ -f "$work/kernel/boot/vmlinuz-$release" ] || die "no kernel in $deb"
moddir="$work/kernel/lib/modules/$release"
# The package ships no modules.dep (depmod makes it at install): busybox makes one.
"$busybox" depmod -b "$work/kernel" "$release"

# Load order: dependencies first (depth-first over modules.dep), each module once.
declare -A dep_of=() path_of=() seen=()
while IFS= read -r line; do
    file="${line%%:*}"
    name="$(basename "$file")"
    name="${name%%.ko*}"
    path_of[$name]="$file"
    dep_of[$name]="${line#*:}"
done <"$moddir/modules.dep"
order=()
visit() {
    local m="$1" d dn
    [ -z "${seen[$m]:-}" ] || return 0
    seen[$m]=1
    [ -n "${path_of[$m]:-}" ] || die "module $m is not in $release"
    for d in ${dep_of[$m]}; do
        dn="$(basename "$d")"
        visit "${dn%%.ko*}"
    done
    order+=("$m")
}
for m in "${GUEST_MODULES[@]}"; do visit "$m"; done

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,mnt,tmp,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"
for m in "${order[@]}"; do
    src="$moddir/${path_of[$m]}"
    case "$src" in
    *.ko) cp "$src" "$root/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$src" >"$root/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$root/lib/modules/$m.ko" ;;
    *) die "unknown module format $src" ;;
    esac
done
printf '%s\n' "${order[@]}" >"$root/etc/modules"
# The network side of the guest (ONE-GUEST-NET, -NICS, -PING: see net-init.sh).
cp "$here/net-init.sh" "$root/etc/net-init.sh"
printf '%s\n' "$release" >"$root/etc/kernel-release"

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
# PID 1 of the test guest. Reports on the console; never exits (PID 1 must not).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "ONE-GUEST-BOOT KERNEL=$(cat /etc/kernel-release)"
while read -r m; do insmod "/lib/modules/$m.ko" 2>/dev/null; done </etc/modules

# ACPI power button (virsh shutdown/reboot): any event on its input device powers off.
# Watched as early as possible: a press before this point is lost, as on a real machine.
watch=""
for d in /sys/class/input/input*; do
    [ "$(cat "$d/name" 2>/dev/null)" = "Power Button" ] || continue
    for e in "$d"/event*; do
        [ -e "$e" ] || continue
        watch="$watch /dev/input/$(basename "$e")"
        (dd if="/dev/input/$(basename "$e")" bs=24 count=1 >/dev/null 2>&1 &&
            echo "ONE-GUEST-POWEROFF" && sync && poweroff -f) &
    done
done
echo "ONE-GUEST-ACPI WATCH=${watch# }"

# The CONTEXT CD: the first CD-ROM holding context.sh (devices appear asynchronously).
unset HOSTNAME # the shell's own "(none)"; only the context's counts
context=no
i=0
while [ $i -lt 50 ] && [ $context = no ]; do
    for dev in /dev/sr0 /dev/sr1 /dev/sr2 /dev/sr3; do
        [ -b "$dev" ] || continue
        if mount -t iso9660 -o ro "$dev" /mnt 2>/dev/null; then
            if [ -f /mnt/context.sh ]; then context=yes; break; fi
            umount /mnt
        fi
    done
    [ $context = yes ] || { i=$((i + 1)); sleep 0.1; }
done
if [ $context = yes ]; then
    cp /mnt/context.sh /tmp/context.sh
    sed 's/^/ONE-GUEST-CONTEXT /' /tmp/context.sh
    . /tmp/context.sh
fi

name="${SET_HOSTNAME:-${HOSTNAME:-one-guest}}"
hostname "$name"
ip link set lo up
# NICs: ETHn_MAC picks the interface (OpenNebula's order need not be the kernel's).
n=0
while [ $n -lt 8 ]; do
    eval "nip=\${ETH${n}_IP:-} nmac=\${ETH${n}_MAC:-} nmask=\${ETH${n}_MASK:-255.255.255.0} ngw=\${ETH${n}_GATEWAY:-}"
    if [ -n "$nip" ]; then
        dev="eth$n"
        if [ -n "$nmac" ]; then
            for a in /sys/class/net/*/address; do
                [ "$(cat "$a")" = "$(echo "$nmac" | tr A-F a-f)" ] && dev="$(basename "$(dirname "$a")")"
            done
        fi
        eval "$(ipcalc -p "$nip" "$nmask")"
        ip link set "$dev" up
        ip addr add "$nip/$PREFIX" dev "$dev"
        [ -z "$ngw" ] || ip route add default via "$ngw" dev "$dev"
    fi
    n=$((n + 1))
done

# Disks: block devices appear asynchronously after the modules load.
wait_dev() {
    j=0
    while [ $j -lt 50 ] && [ ! -b "/dev/$1" ]; do j=$((j + 1)); sleep 0.1; done
    [ -b "/dev/$1" ]
}
# The marker in the first sector of /dev/$1 (token:n), or nothing.
read_mark() {
    dd if="/dev/$1" bs=512 count=1 2>/dev/null | tr '\000' '\n' | head -n 1 |
        sed -n 's/^ONE-MARK \([^ ]*\)$/\1/p'
}
if [ -n "${ONE_GUEST_MARK:-}" ]; then
    for dev in ${ONE_GUEST_MARK_DEV:-vda}; do
        if ! wait_dev "$dev"; then
            echo "ONE-GUEST-MARK DEV=$dev FOUND=nodevice WROTE=none"
            continue
        fi
        found="$(read_mark "$dev")"
        n=0
        case "$found" in "$ONE_GUEST_MARK":*) n="${found##*:}" ;; esac
        new="$ONE_GUEST_MARK:$((n + 1))"
        printf 'ONE-MARK %s\n' "$new" >/tmp/mark
        dd if=/tmp/mark of="/dev/$dev" bs=512 count=1 conv=sync,notrunc,fsync 2>/dev/null
        sync
        echo "ONE-GUEST-MARK DEV=$dev FOUND=${found:-none} WROTE=$new"
    done
fi
for dev in ${ONE_GUEST_MOUNT:-}; do
    fs=none
    mkdir -p "/mnt-$dev"
    if wait_dev "$dev" && mount -o ro "/dev/$dev" "/mnt-$dev" 2>/dev/null; then
        fs="$(awk -v m="/mnt-$dev" '$2 == m {print $3}' /proc/mounts)"
    fi
    echo "ONE-GUEST-MOUNT DEV=$dev FS=${fs:-none}"
done
for dev in ${ONE_GUEST_SWAP:-}; do
    on=no
    wait_dev "$dev" && swapon "/dev/$dev" 2>/dev/null && on=yes
    echo "ONE-GUEST-SWAP DEV=$dev ON=$on"
done
marks() {
    [ -n "${ONE_GUEST_MARK:-}" ] || return 0
    echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
    out=""
    for dev in ${ONE_GUEST_MARK_DEV:-vda}; do
        [ -b "/dev/$dev" ] && out="$out $dev:$(read_mark "$dev")"
    done
    echo " MARK=$(echo $out | tr ' ' ',')"
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "ONE-GUEST-READY ETH0_IP=${ETH0_IP:-} HOSTNAME=$name CONTEXT=$context UPTIME=$(uptime_s)"
. /etc/net-init.sh

if [ -n "${ONE_GUEST_DEBUG:-}" ]; then
    cat /proc/bus/input/devices; ls -l /dev/input; ls /sys/class/input; lsmod
fi

seq=0
while :; do
    if [ -n "${ONE_GUEST_HEARTBEAT:-}" ]; then
        sleep "$ONE_GUEST_HEARTBEAT"
        seq=$((seq + 1))
        blk="$(ls /sys/block | grep -v -e '^loop' -e '^ram' | tr '\n' ',' | sed 's/,$//')"
        net="$(ls /sys/class/net | grep -v '^lo$' | tr '\n' ',' | sed 's/,$//')"
        echo "ONE-GUEST-ALIVE SEQ=$seq UPTIME=$(uptime_s) BLOCK=$blk NET=$net$(marks)"
    else
        sleep 3600
    fi
done
INIT
chmod 0755 "$root/init"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -9) >"$work/initrd.img"
cp "$work/kernel/boot/vmlinuz-$release" "$work/vmlinuz"
cat >"$work/guest.env" <<EOF
GUEST_KERNEL=$outdir/vmlinuz
GUEST_INITRD=$outdir/initrd.img
GUEST_CMDLINE='$GUEST_CMDLINE'
GUEST_KERNEL_PACKAGE=$pkg
GUEST_KERNEL_RELEASE=$release
GUEST_BUILD=$build_id
EOF
# QEMU runs as libvirt-qemu: the files and the directory must be readable by others.
chmod 0644 "$work/vmlinuz" "$work/initrd.img" "$work/guest.env"
chmod 0755 "$outdir"
mv -f "$work/vmlinuz" "$outdir/vmlinuz"
mv -f "$work/initrd.img" "$outdir/initrd.img"
mv -f "$work/guest.env" "$outdir/guest.env"
say "built $outdir (kernel $release, modules: ${order[*]})"
