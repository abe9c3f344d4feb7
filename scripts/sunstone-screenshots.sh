#!/usr/bin/env bash
# Makes the web console's screenshots under docs/images/ (sunstone-*.png) that README.md
# and docs/sunstone.md show: builds the debug binaries, then runs
# scripts/sunstone-screenshots.py against a throwaway cloud in headless chromium.
# Not part of the test run; run it after a visible change to the console and commit the
# pictures.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
cargo build -p oned -p one-scheduler -p sunstone
TARGET="$(target_dir)"
export ONED_BIN="$TARGET/debug/oned" SCHED_BIN="$TARGET/debug/one-scheduler" SUNSTONE_BIN="$TARGET/debug/sunstone"
exec "$(one_venv_dir)/bin/python" scripts/sunstone-screenshots.py
