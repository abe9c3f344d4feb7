#!/usr/bin/env bash
# Runs every check CI runs (.ci/run execs this script):
#   deps          scripts/install-deps.sh (as root; otherwise only what needs no root)
#   fmt           cargo fmt --all -- --check
#   clippy        cargo clippy --workspace --all-targets -- -D warnings
#   libvirt       tests/hostenv/start-libvirtd.sh (as root; the real-KVM tests skip without it)
#   build         cargo build -p oned -p one-scheduler -p one-node-agent -p one-cli -p sunstone -p one-cloudfile
#                 (debug; the e2e suite runs these binaries, the CLI's onevm, onehost, ...)
#   rust          cargo nextest run --workspace (+ cargo test --doc), or cargo test --workspace
#                 when cargo-nextest is not installed
#   e2e-sqlite    pytest tests/e2e against SQLite
#   e2e-postgres  pytest tests/e2e against a throwaway PostgreSQL cluster (ONE_TEST_DB=postgres)
# then prints each stage's result, every skipped test with its reason, and a last line
#   N passed, N failed, N skipped
# (tests of cargo and pytest added up; a stage that fails without a test count, such as fmt,
# clippy or a build, adds one failure). Exits non-zero if anything failed.
#
#   scripts/test.sh                  everything
#   scripts/test.sh e2e-sqlite ...   only the named stages (deps always runs)
# Extra pytest arguments: PYTEST_ADDOPTS="-k restart -x" scripts/test.sh e2e-sqlite
# With CI=true the cargo target dir defaults to /var/tmp/one-rs-target (outside the clone,
# reused by later runs on the same machine); CARGO_TARGET_DIR overrides it.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

ALL_STAGES=(fmt clippy build rust e2e-sqlite e2e-postgres)
if [ $# -gt 0 ]; then
    STAGES=("$@")
    for s in "${STAGES[@]}"; do
        [[ " ${ALL_STAGES[*]} " == *" $s "* ]] || die "unknown stage '$s' (stages: ${ALL_STAGES[*]})"
    done
else
    STAGES=("${ALL_STAGES[@]}")
fi
wants() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

if [ "${CI:-}" = "true" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/one-rs-target}"
fi
export CARGO_TERM_COLOR=never
TARGET="$(target_dir)"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/one-rs-test.XXXXXX")"

PASSED=0
FAILED=0
SKIPPED=0
RESULTS=()  # "stage|result"
SKIPS=()    # "stage: test: reason"
FAILS=()    # "stage: test"

record() { RESULTS+=("$1|$2"); }
count() { # stage passed failed skipped
    PASSED=$((PASSED + $2))
    FAILED=$((FAILED + $3))
    SKIPPED=$((SKIPPED + $4))
    record "$1" "$2 passed, $3 failed, $4 skipped"
}
# run_logged NAME CMD...: runs CMD, showing and saving its output to $LOGDIR/NAME.log
run_logged() {
    local name=$1
    shift
    "$@" 2>&1 | tee "$LOGDIR/$name.log"
    return "${PIPESTATUS[0]}"
}
gate() { # a stage that passes or fails as a whole
    local name=$1
    shift
    step "$name: $*"
    if run_logged "$name" "$@"; then
        record "$name" "ok"
        return 0
    fi
    FAILED=$((FAILED + 1))
    record "$name" "FAILED (counted as 1 failure)"
    FAILS+=("$name: see $LOGDIR/$name.log")
    return 1
}

# --- deps ------------------------------------------------------------------------------
step "deps: scripts/install-deps.sh"
if is_root; then
    if ! scripts/install-deps.sh; then
        FAILED=$((FAILED + 1))
        record deps "FAILED (counted as 1 failure)"
    else
        record deps "ok"
    fi
else
    scripts/install-deps.sh || say "(not root: install the missing Debian packages with sudo scripts/install-deps.sh)"
    record deps "checked (not root)"
fi
PY="$(one_venv_dir)/bin/python"
# The machine's libvirtd, for the tests that drive real domains (they skip, saying why,
# when it does not answer).
if is_root; then
    step "libvirt: tests/hostenv/start-libvirtd.sh"
    if tests/hostenv/start-libvirtd.sh; then record libvirt "ok"; else record libvirt "not started (real-KVM tests skip)"; fi
fi

# --- fmt, clippy, build ----------------------------------------------------------------
wants fmt && gate fmt cargo fmt --all -- --check
wants clippy && gate clippy cargo clippy --workspace --all-targets -- -D warnings
BUILD_OK=1
if wants build; then
    gate build cargo build -p oned -p one-scheduler -p one-node-agent -p one-cli -p sunstone -p one-cloudfile || BUILD_OK=0
fi

# --- Rust tests ------------------------------------------------------------------------
# cargo test / doctest output: sum every "test result:" line; list ignored tests.
parse_cargo_test() { # stage logfile rc
    local stage=$1 log=$2 rc=$3 p f s
    read -r p f s < <(awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed/) p += $i
                if ($(i+1) ~ /^failed/) f += $i
                if ($(i+1) ~ /^ignored/) s += $i
            }
        } END { print p+0, f+0, s+0 }' "$log")
    while IFS= read -r line; do
        SKIPS+=("$stage: ${line#test }")
    done < <(grep -E '^test .* \.\.\. ignored' "$log" || true)
    while IFS= read -r line; do
        FAILS+=("$stage: $line")
    done < <(sed -nE 's/^test (.*) \.\.\. FAILED$/\1/p' "$log" | sort -u)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # a build error or a crashed harness: no count, still a failure
        FAILS+=("$stage: exited with status $rc without a failed test (build error?): see $log")
    fi
    count "$stage" "$p" "$f" "$s"
}

if wants rust; then
    export ONE_TEST_SKIP_LOG="$LOGDIR/rust-skips.txt"
    : >"$ONE_TEST_SKIP_LOG"
    if command -v cargo-nextest >/dev/null 2>&1; then
        step "rust: cargo nextest run --workspace"
        run_logged rust cargo nextest run --workspace --no-fail-fast --no-tests=warn \
            --status-level skip --color never
        rc=$?
        summary="$(grep -E '^ *Summary \[' "$LOGDIR/rust.log" | tail -n 1)"
        run=$(sed -nE 's/.* ([0-9]+) tests? run.*/\1/p' <<<"$summary")
        p=$(sed -nE 's/.*[:,] ([0-9]+) passed.*/\1/p' <<<"$summary")
        s=$(sed -nE 's/.*[:,] ([0-9]+) skipped.*/\1/p' <<<"$summary")
        run=${run:-0} p=${p:-0} s=${s:-0}
        f=$((run - p))
        while IFS= read -r line; do
            FAILS+=("rust: $line")
        done < <(sed -nE 's/^ *(FAIL|TIMEOUT|SIGSEGV|SIGABRT|ABORT) \[[^]]*\] (\([^)]*\) )?(.*)$/\3/p' "$LOGDIR/rust.log" | sort -u)
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1
            FAILS+=("rust: cargo nextest exited with status $rc without a failed test (build error?): see $LOGDIR/rust.log")
        fi
        if [ -z "$summary" ] && grep -q 'no tests to run' "$LOGDIR/rust.log"; then
            say "(nextest found no tests)"
        fi
        while IFS= read -r line; do
            SKIPS+=("rust: $line (#[ignore])")
        done < <(sed -nE 's/^ *SKIP \[[^]]*\] (\([^)]*\) )?(.*)$/\2/p' "$LOGDIR/rust.log")
        # Tests that could not run here (a missing tool) pass after printing `SKIP: reason`
        # and recording it in ONE_TEST_SKIP_LOG: count each such test as skipped, not passed.
        if [ -s "$ONE_TEST_SKIP_LOG" ]; then
            while IFS=$'\t' read -r test reason; do
                SKIPS+=("rust: $test: $reason")
                s=$((s + 1))
                p=$((p - 1))
            done < <(sort -u -t$'\t' -k1,1 "$ONE_TEST_SKIP_LOG")
        fi
        count rust "$p" "$f" "$s"

        step "rust doc tests: cargo test --workspace --doc"
        run_logged rust-doc cargo test --workspace --doc --no-fail-fast
        rc=$?
        # "no library targets found" (a workspace of binaries) is not a failure
        if [ "$rc" -ne 0 ] && grep -q 'no library targets found' "$LOGDIR/rust-doc.log"; then rc=0; fi
        parse_cargo_test rust-doc "$LOGDIR/rust-doc.log" "$rc"
    else
        step "rust: cargo test --workspace (cargo-nextest not installed)"
        run_logged rust cargo test --workspace --no-fail-fast
        parse_cargo_test rust "$LOGDIR/rust.log" $?
    fi
fi

# --- e2e -------------------------------------------------------------------------------
# parse_junit STAGE XML RC: adds pytest's counts and skip reasons.
parse_junit() {
    local stage=$1 xml=$2 rc=$3 out p f s
    if [ ! -s "$xml" ]; then
        out="0 0 0"
    else
        out="$("$PY" - "$xml" "$stage" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
p = f = s = 0
for suite in suites:
    for case in suite.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            f += 1
            msg = (bad.get("message") or "").strip().splitlines()
            print(f"FAIL\t{name}: {msg[0][:160] if msg else ''}")
        elif case.find("skipped") is not None:
            s += 1
            sk = case.find("skipped")
            reason = (sk.get("message") or sk.text or "").strip().replace("\n", " ")
            print(f"SKIP\t{name}: {reason}")
        else:
            p += 1
print(p, f, s)
EOF
)"
    fi
    while IFS= read -r line; do
        case "$line" in
        SKIP$'\t'*) SKIPS+=("$stage: ${line#SKIP$'\t'}") ;;
        FAIL$'\t'*) FAILS+=("$stage: ${line#FAIL$'\t'}") ;;
        esac
    done <<<"$out"
    read -r p f s <<<"$(tail -n 1 <<<"$out")"
    # pytest: 0 all passed, 1 some failed, 5 no tests collected; anything else is a failure
    if { [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$f" -eq 0 ]; } || { [ "$rc" -eq 0 ] && [ "$f" -gt 0 ]; }; then
        f=$((f + 1))
        FAILS+=("$stage: pytest exited with status $rc (see $LOGDIR/$stage.log)")
    fi
    count "$stage" "$p" "$f" "$s"
}

run_e2e() { # stage db
    local stage=$1 db=$2 xml="$LOGDIR/$1.xml" rc
    step "$stage: pytest tests/e2e (ONE_TEST_DB=$db)"
    if [ "$BUILD_OK" -ne 1 ]; then
        record "$stage" "not run (the oned build failed)"
        return
    fi
    if [ ! -x "$PY" ] || ! "$PY" -c 'import pytest, pyone' 2>/dev/null; then
        FAILED=$((FAILED + 1))
        record "$stage" "FAILED: no Python environment with pytest and pyone at $(one_venv_dir) (run scripts/install-deps.sh)"
        return
    fi
    ONED_BIN="${ONED_BIN:-$TARGET/debug/oned}" ONE_TEST_DB="$db" \
        run_logged "$stage" "$PY" -m pytest tests/e2e -q -rfEs --junitxml="$xml"
    rc=$?
    parse_junit "$stage" "$xml" "$rc"
}

wants e2e-sqlite && run_e2e e2e-sqlite sqlite
wants e2e-postgres && run_e2e e2e-postgres postgres

# --- summary ---------------------------------------------------------------------------
printf '\n==================== summary ====================\n'
for r in "${RESULTS[@]}"; do
    printf '%-14s %s\n' "${r%%|*}" "${r#*|}"
done
if [ ${#SKIPS[@]} -gt 0 ]; then
    printf '\nskipped (%d):\n' "${#SKIPS[@]}"
    for s in "${SKIPS[@]}"; do
        printf '  %s\n' "$s"
    done
fi
if [ ${#FAILS[@]} -gt 0 ]; then
    printf '\nfailed (%d):\n' "${#FAILS[@]}"
    for f in "${FAILS[@]}"; do
        printf '  %s\n' "$f"
    done
fi
printf '\nlogs: %s\n' "$LOGDIR"
printf '%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
[ "$FAILED" -eq 0 ]
