#!/usr/bin/env bash
# Stops what scripts/start.sh started: one-scheduler, then the oned whose pid is in
# var/oned.pid (SIGTERM, then SIGKILL after 30 s). The data in var/ stays; scripts/start.sh starts it again.
# ONED_DATA_DIR: the data directory scripts/start.sh was given (default var/ in the repo).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

DATA="$(data_dir)"
# The data directory as messages show it: var when it is the repo's own.
SHOWN="${DATA#"$REPO"/}"
PIDFILE="$DATA/oned.pid"

# stop_pid NAME PID: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
    local name=$1 pid=$2
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || {
            say "$name (pid $pid) stopped"
            return 0
        }
        sleep 0.1
    done
    warn "$name (pid $pid) did not stop within 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# --- later components, stopped before oned (reverse order of scripts/start.sh) -----------
#   [web console]
#   [local host]  nothing to stop: its agent is oned's child and ends with it; its
#                 domains keep running, as VMs do when OpenNebula's oned stops
#   [scheduler]
if [ -f "$DATA/scheduler.pid" ]; then
    spid="$(cat "$DATA/scheduler.pid")"
    if [ -n "$spid" ] && [ "$(cat "/proc/$spid/comm" 2>/dev/null)" = "one-scheduler" ]; then
        stop_pid one-scheduler "$spid"
    fi
    rm -f "$DATA/scheduler.pid"
fi

# --- oned -------------------------------------------------------------------------------
if [ ! -f "$PIDFILE" ]; then
    say "oned is not running (no $SHOWN/oned.pid)"
    exit 0
fi
pid="$(cat "$PIDFILE")"
if [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "oned" ]; then
    stop_pid oned "$pid"
else
    say "oned is not running (pid ${pid:-?} from $SHOWN/oned.pid is gone)"
fi
rm -f "$PIDFILE"
