#!/usr/bin/env bash
# Starts the cloud on this machine, from the repo: installs what is missing, starts libvirtd,
# builds oned, one-scheduler, one-node-agent, the CLI, onecloud and sunstone (release), puts the
# commands (onevm, onehost, ..., onecloud) on the PATH with their completions and man pages
# (symlinks in /usr/local/bin as root, in ~/.local/bin otherwise), starts oned, the scheduler
# and the web console in the background with their data in var/, registers this machine as
# the KVM host `localhost` (its agent runs through a local pipe), and prints how to reach it all.
#
#   sudo scripts/start.sh        (or, as root, scripts/start.sh)
#
# Run with sudo, the Debian packages are installed as root and the build and oned run as
# the user who called sudo (so target/ and var/ stay theirs and var/one_auth is readable
# by them). Environment (pass through sudo as `sudo ONED_LISTEN=... scripts/start.sh`):
#   ONED_LISTEN   address of the XML-RPC API (default 127.0.0.1:2633; port 0 picks a free
#                 one, written to DATA/one_endpoint)
#   ONED_DATA_DIR the data directory, "DATA" here (default var/ in the repo)
#   ONED_CONFIG   oned's configuration file (default: none, every option at its default;
#                 etc/oned.toml documents them)
#   ONED_DB       database URL (default: SQLite at DATA/one.db)
#   ONE_AUTH      file with `oneadmin:PASSWORD`: oneadmin's password on the first start
#                 (default: a generated one, written to DATA/one_auth)
#   ONE_BUILD_PROFILE  cargo profile to build and run (default release; the test of the
#                 README runs this script with the debug build the test suite uses)
#   SUNSTONE_LISTEN  address of the web console (default 127.0.0.1:9869)
# Stop everything with scripts/stop.sh (with the same ONED_DATA_DIR).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

DATA="$(data_dir)"
# The data directory as messages show it: var when it is the repo's own.
SHOWN="${DATA#"$REPO"/}"
LISTEN="${ONED_LISTEN:-127.0.0.1:2633}"
PROFILE="${ONE_BUILD_PROFILE:-release}"
case "$PROFILE" in
release | debug) ;;
*) die "ONE_BUILD_PROFILE must be release or debug, not '$PROFILE'" ;;
esac
SUNSTONE_LISTEN="${SUNSTONE_LISTEN:-127.0.0.1:9869}"
PIDFILE="$DATA/oned.pid"

# Run a command as the user who called sudo (as is otherwise), with their login PATH so
# their Rust toolchain is found.
as_invoker() {
    if is_root && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != "root" ]; then
        runuser -u "$SUDO_USER" -- bash -lc 'cd "$0" && exec "$@"' "$REPO" "$@"
    else
        "$@"
    fi
}

oned_pid() { # the pid of the oned serving var/, if one runs
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE" 2>/dev/null)"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "oned" ] || return 1
    printf '%s\n' "$pid"
}

# launch NAME LOG ARGS...: starts a daemon detached, as the invoking user; sets LAUNCHED to
# its pid (with runuser the launcher is runuser itself, so look for the child by name).
launch() {
    local name=$1 log=$2 launcher child
    shift 2
    if is_root && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != "root" ]; then
        nohup runuser -u "$SUDO_USER" -- setsid "$@" </dev/null >>"$log" 2>&1 &
    else
        nohup setsid "$@" </dev/null >>"$log" 2>&1 &
    fi
    launcher=$!
    LAUNCHED=$launcher
    for _ in $(seq 1 100); do
        if [ "$(cat "/proc/$launcher/comm" 2>/dev/null)" = "$name" ]; then
            LAUNCHED=$launcher
            return 0
        fi
        child="$(pgrep -P "$launcher" -x "$name" 2>/dev/null | head -n 1 || true)"
        if [ -n "$child" ]; then
            LAUNCHED=$child
            return 0
        fi
        sleep 0.05
    done
}

sunstone_running() {
    local spid
    spid="$(cat "$DATA/sunstone.pid" 2>/dev/null)" || return 1
    [ -n "$spid" ] && [ "$(cat "/proc/$spid/comm" 2>/dev/null)" = "sunstone" ]
}

# start_sunstone BIN: the web console for the oned serving var/ (it holds no credentials:
# every browser session logs in as an oned user).
start_sunstone() {
    step "starting the web console (sunstone) on $SUNSTONE_LISTEN"
    rm -f "$DATA/sunstone_url"
    launch sunstone "$DATA/sunstone.log" "$1" --listen "$SUNSTONE_LISTEN" \
        --endpoint "$(cat "$DATA/one_endpoint")" --url-file "$DATA/sunstone_url"
    echo "$LAUNCHED" >"$DATA/sunstone.pid"
    for _ in $(seq 1 100); do
        [ -s "$DATA/sunstone_url" ] && return 0
        kill -0 "$LAUNCHED" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$DATA/sunstone.log" 2>/dev/null || true
    warn "sunstone did not start (see var/sunstone.log)"
}

scheduler_running() {
    local spid
    spid="$(cat "$DATA/scheduler.pid" 2>/dev/null)" || return 1
    [ -n "$spid" ] && [ "$(cat "/proc/$spid/comm" 2>/dev/null)" = "one-scheduler" ]
}

# start_scheduler BIN: one-scheduler against the oned serving var/.
start_scheduler() {
    step "starting one-scheduler (etc/scheduler.toml)"
    launch one-scheduler "$DATA/scheduler.log" "$1" --config "$REPO/etc/scheduler.toml" \
        --endpoint "$(cat "$DATA/one_endpoint")" --auth-file "$DATA/one_auth"
    echo "$LAUNCHED" >"$DATA/scheduler.pid"
    sleep 0.3
    kill -0 "$LAUNCHED" 2>/dev/null || {
        tail -n 20 "$DATA/scheduler.log" 2>/dev/null || true
        die "one-scheduler exited at once (see $SHOWN/scheduler.log)"
    }
}

python_with_pyone() {
    local venv
    venv="$(one_venv_dir)"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pyone' 2>/dev/null; then
        printf '%s\n' "$venv/bin/python"
    elif command -v python3 >/dev/null && python3 -c 'import pyone' 2>/dev/null; then
        printf '%s\n' python3
    else
        return 1
    fi
}

print_usage_info() {
    local endpoint py
    endpoint="$(cat "$DATA/one_endpoint" 2>/dev/null || echo "?")"
    py="$(python_with_pyone)" || py=""
    cat <<EOF

  endpoint:     $endpoint   (also in $SHOWN/one_endpoint)
  credentials:  $SHOWN/one_auth   (oneadmin:PASSWORD, mode 0600)
  web console:  $(cat "$DATA/sunstone_url" 2>/dev/null || echo "not running")   (log in as oneadmin with the password in $SHOWN/one_auth)
  logs:         $SHOWN/oned.log, $SHOWN/scheduler.log, $SHOWN/sunstone.log
  CLI:          export ONE_XMLRPC=$endpoint ONE_AUTH=$DATA/one_auth; onevm list   (commands in $CLI_BIN_DIR)
  try it:       ONE_XMLRPC=$endpoint ONE_AUTH=$SHOWN/one_auth ${py:-python3} -c 'import os, pyone; one = pyone.OneServer(os.environ["ONE_XMLRPC"], session=open(os.environ["ONE_AUTH"]).read().strip()); print(one.system.version(), [u.NAME for u in one.userpool.info().USER])'
  stop it:      scripts/stop.sh
EOF
    [ -n "$py" ] || say "  (pyone is not installed yet: sudo scripts/install-deps.sh puts it in $(one_venv_dir))"
}

# The CLI's commands, from the last build, when one is there (the "already running" path).
CLI_COMMANDS=(onevm onehost oneimage onetemplate onevnet onedatastore oneuser onegroup onecluster oneacl onehook onesecgroup onecloud)
if is_root; then
    CLI_BIN_DIR=/usr/local/bin
    CLI_SHARE_DIR=/usr/local/share
else
    CLI_BIN_DIR="$HOME/.local/bin"
    CLI_SHARE_DIR="${XDG_DATA_HOME:-$HOME/.local/share}"
fi

# link_into DIR TARGET: a symlink DIR/basename(TARGET) -> TARGET, unless DIR already holds a
# file of that name that is not one of ours (OpenNebula's own CLI, say): that one stays.
link_into() {
    local dir=$1 target=$2 link
    link="$dir/$(basename "$target")"
    if [ -e "$link" ] && ! [ -L "$link" ]; then
        warn "$link exists and is not ours: left alone"
        return 0
    fi
    if [ -L "$link" ] && [ "$(readlink "$link")" != "$target" ]; then
        case "$(readlink "$link")" in
        "$REPO"/* | */release/* | "$DATA"/*) ;;
        *)
            warn "$link points to $(readlink "$link"), not ours: left alone"
            return 0
            ;;
        esac
    fi
    ln -sfn "$target" "$link"
}

# install_cli RELEASE_DIR: puts onevm, onehost, ... on the PATH (symlinks to the build), with
# bash/zsh/fish completions and man pages generated from the commands' own definitions.
install_cli() {
    local release=$1 gen="$1/one-cli-gen" out="$DATA/cli" c f
    [ -x "$gen" ] || return 0
    step "CLI: onevm, onehost, ... in $CLI_BIN_DIR"
    mkdir -p "$CLI_BIN_DIR"
    as_invoker "$gen" completions bash "$out/bash" >/dev/null
    as_invoker "$gen" completions zsh "$out/zsh" >/dev/null
    as_invoker "$gen" completions fish "$out/fish" >/dev/null
    as_invoker "$gen" man "$out/man1" >/dev/null
    for c in "${CLI_COMMANDS[@]}"; do
        link_into "$CLI_BIN_DIR" "$release/$c"
    done
    mkdir -p "$CLI_SHARE_DIR/bash-completion/completions" "$CLI_SHARE_DIR/man/man1" \
        "$CLI_SHARE_DIR/zsh/site-functions"
    for c in "${CLI_COMMANDS[@]}"; do
        [ -f "$out/bash/$c.bash" ] && ln -sfn "$out/bash/$c.bash" "$CLI_SHARE_DIR/bash-completion/completions/$c"
        [ -f "$out/zsh/_$c" ] && ln -sfn "$out/zsh/_$c" "$CLI_SHARE_DIR/zsh/site-functions/_$c"
    done
    for f in "$out"/man1/*.1; do
        ln -sfn "$f" "$CLI_SHARE_DIR/man/man1/$(basename "$f")"
    done
    if is_root; then
        [ -d /usr/share/fish/vendor_completions.d ] && for c in "${CLI_COMMANDS[@]}"; do
            [ -f "$out/fish/$c.fish" ] && ln -sfn "$out/fish/$c.fish" "/usr/share/fish/vendor_completions.d/$c.fish"
        done
    else
        mkdir -p "${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
        for c in "${CLI_COMMANDS[@]}"; do
            [ -f "$out/fish/$c.fish" ] && ln -sfn "$out/fish/$c.fish" "${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions/$c.fish"
        done
    fi
    case ":$PATH:" in
    *":$CLI_BIN_DIR:"*) ;;
    *) say "  $CLI_BIN_DIR is not on your PATH: add it (export PATH=\"$CLI_BIN_DIR:\$PATH\")" ;;
    esac
    say "  completions and man pages: $out (linked under $CLI_SHARE_DIR)"
}

# --- 1. dependencies ---------------------------------------------------------------------
step "dependencies"
if is_root; then
    scripts/install-deps.sh
else
    if ! scripts/install-deps.sh --check; then
        say "Some dependencies are missing (listed above): run sudo scripts/start.sh, or"
        say "sudo scripts/install-deps.sh. Going on with what is there."
    fi
fi
if is_root; then
    # The machine's libvirtd (no systemd here); a failure leaves the host in ERROR, with
    # the reason, rather than stopping the cloud from starting.
    tests/hostenv/start-libvirtd.sh || warn "libvirtd could not be started: the host localhost will say why"
fi
command -v cargo >/dev/null || as_invoker bash -c 'command -v cargo' >/dev/null ||
    die "cargo not found: install the Rust toolchain (https://rustup.rs)"

# --- 2. already running? ----------------------------------------------------------------
if pid="$(oned_pid)"; then
    say ""
    say "oned is already running (pid $pid) with its data in $SHOWN/; not starting a second one."
    if ! scheduler_running; then
        sched="$(as_invoker bash -c 'echo "${CARGO_TARGET_DIR:-target}"')/$PROFILE/one-scheduler"
        case "$sched" in /*) ;; *) sched="$REPO/$sched" ;; esac
        if [ -x "$sched" ]; then
            start_scheduler "$sched"
        else
            warn "one-scheduler is not running and not built: stop oned (scripts/stop.sh) and start again"
        fi
    fi
    if ! sunstone_running; then
        sun="$(as_invoker bash -c 'echo "${CARGO_TARGET_DIR:-target}"')/release/sunstone"
        case "$sun" in /*) ;; *) sun="$REPO/$sun" ;; esac
        if [ -x "$sun" ]; then
            start_sunstone "$sun"
        else
            warn "sunstone is not running and not built: stop oned (scripts/stop.sh) and start again"
        fi
    fi
    print_usage_info
    exit 0
fi
if [ -f "$DATA/oned.lock" ] && command -v flock >/dev/null && ! flock -n "$DATA/oned.lock" true; then
    say ""
    say "An oned that this script did not start holds $SHOWN/oned.lock (it is using $SHOWN/);"
    say "not starting a second one. Stop that one first."
    print_usage_info
    exit 0
fi

# --- 3. build ---------------------------------------------------------------------------
build_args=(-p oned -p one-scheduler -p one-node-agent -p one-cli -p sunstone -p one-cloudfile)
[ "$PROFILE" = release ] && build_args=(--release "${build_args[@]}")
step "building (cargo build ${build_args[*]})"
as_invoker cargo build "${build_args[@]}"
RELEASE="$(as_invoker bash -c 'echo "${CARGO_TARGET_DIR:-target}"')"
case "$RELEASE" in /*) ;; *) RELEASE="$REPO/$RELEASE" ;; esac
RELEASE="$RELEASE/$PROFILE"
BIN="$RELEASE/oned"
SCHED_BIN="$RELEASE/one-scheduler"
[ -x "$BIN" ] || die "the build did not produce $BIN"
[ -x "$SCHED_BIN" ] || die "the build did not produce $SCHED_BIN"
[ -x "$RELEASE/one-node-agent" ] || die "the build did not produce $RELEASE/one-node-agent"
[ -x "$RELEASE/sunstone" ] || die "the build did not produce $RELEASE/sunstone"
install_cli "$RELEASE"

# --- 4. oned ----------------------------------------------------------------------------
step "starting oned on $LISTEN, data in $DATA"
as_invoker mkdir -p "$DATA"
rm -f "$DATA/one_endpoint"
args=(--data-dir "$DATA" --listen "$LISTEN")
[ -n "${ONED_DB:-}" ] && args+=(--db "$ONED_DB")
if [ -n "${ONED_CONFIG:-}" ]; then
    [ -f "$ONED_CONFIG" ] || die "ONED_CONFIG names no file: $ONED_CONFIG"
    args+=(--config "$(cd "$(dirname "$ONED_CONFIG")" && pwd)/$(basename "$ONED_CONFIG")")
fi
launch oned "$DATA/oned.out" "$BIN" "${args[@]}"
pid=$LAUNCHED
echo "$pid" >"$PIDFILE"

for _ in $(seq 1 600); do
    [ -s "$DATA/one_endpoint" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        say "oned exited before it was ready. Its output:"
        tail -n 30 "$DATA/oned.out" 2>/dev/null || true
        tail -n 30 "$DATA/oned.log" 2>/dev/null || true
        rm -f "$PIDFILE"
        exit 1
    fi
    sleep 0.1
done
[ -s "$DATA/one_endpoint" ] || die "oned did not write $SHOWN/one_endpoint within 60 s (see $SHOWN/oned.log)"

# A first call, with the credentials from var/one_auth.
if command -v python3 >/dev/null; then
    if ! ONE_XMLRPC="$(cat "$DATA/one_endpoint")" ONE_AUTH="$DATA/one_auth" python3 - <<'EOF'
import os, sys, xmlrpc.client
session = open(os.environ["ONE_AUTH"]).read().strip()
r = xmlrpc.client.ServerProxy(os.environ["ONE_XMLRPC"]).one.system.version(session)
if not r[0]:
    sys.exit(f"one.system.version failed: {r}")
print(f"one.system.version answers {r[1]}")
EOF
    then
        warn "oned runs but the first API call failed (see $SHOWN/oned.log)"
    fi
fi

# --- 5. later components ----------------------------------------------------------------
# Each component that joins the cloud gets its own block here, in this order, started
# after oned and stopped before it by scripts/stop.sh (reverse order):
#   [scheduler]   the scheduler daemon (pending VMs -> hosts)
#   [local host]  this machine as a hypervisor host (libvirt, registered with one.host.allocate)
#   [web console] the web console, and the URL it prints

# [scheduler]
start_scheduler "$SCHED_BIN"

# [local host]
step "this machine as the KVM host localhost"
HOST_LINE="$(ONE_XMLRPC="$(cat "$DATA/one_endpoint")" ONE_AUTH="$DATA/one_auth" python3 - <<'EOF'
import os, re, time, xmlrpc.client
s = open(os.environ["ONE_AUTH"]).read().strip()
one = xmlrpc.client.ServerProxy(os.environ["ONE_XMLRPC"]).one
pool = one.hostpool.info(s)[1]
m = re.search(r"<HOST><ID>(\d+)</ID><NAME>localhost</NAME>", pool)
if m:
    hid = int(m.group(1))
else:
    ok, hid, *_ = one.host.allocate(s, "localhost", "kvm", "kvm", -1)
    if not ok:
        raise SystemExit(f"one.host.allocate failed: {hid}")
names = {0: "INIT", 1: "MONITORING_MONITORED", 2: "MONITORED", 3: "ERROR", 4: "DISABLED",
         5: "MONITORING_ERROR", 6: "MONITORING_INIT", 7: "MONITORING_DISABLED", 8: "OFFLINE"}
state, xml = 0, ""
for _ in range(300):
    xml = one.host.info(s, hid)[1]
    state = int(re.search(r"<STATE>(\d+)</STATE>", xml).group(1))
    if state in (2, 3, 4, 8):
        break
    time.sleep(0.1)
err = re.search(r"<ERROR><!\[CDATA\[(.*?)\]\]></ERROR>", xml, re.S)
cpu = re.search(r"<TOTAL_CPU>(\d+)</TOTAL_CPU>", xml)
mem = re.search(r"<TOTAL_MEM>(\d+)</TOTAL_MEM>", xml)
line = f"host {hid} (localhost) is {names.get(state, state)}"
if state == 2 and cpu and mem:
    line += f": {int(cpu.group(1)) // 100} CPUs, {int(mem.group(1)) // 1024} MiB"
if state == 3 and err:
    line += f": {err.group(1)}"
print(line)
EOF
)" || HOST_LINE="registering localhost failed (see $SHOWN/oned.log)"
say "$HOST_LINE"

# [web console]
start_sunstone "$RELEASE/sunstone"

say ""
say "oned is running (pid $pid), data in $SHOWN/; one-scheduler (pid $(cat "$DATA/scheduler.pid")) places pending VMs"
sunstone_running && say "the web console is at $(cat "$DATA/sunstone_url")"
print_usage_info
