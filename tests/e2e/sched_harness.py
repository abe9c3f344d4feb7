"""Runs the one-scheduler daemon against a test's oned.

    from sched_harness import Scheduler, scheduler_binary

    s = Scheduler(oned, tmp_path / "sched", config="max_host = 1\n").start()
    ...
    s.stop()          # SIGTERM, then SIGKILL; returns the exit status
    s.logs()          # its stderr

The binary is found like oned's: $SCHED_BIN, else $CARGO_TARGET_DIR/debug/one-scheduler,
else <repo>/target/debug/one-scheduler (`cargo build -p one-scheduler`). It is pointed at
the oned with --endpoint and at oneadmin's credentials with --auth-file (the file the oned
harness wrote), so nothing in the environment or the home directory is used.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from pathlib import Path

from harness import Oned, workspace_binary

STOP_TIMEOUT = 10.0

_LIVE: set["Scheduler"] = set()
_LOCK = threading.Lock()


@atexit.register
def _kill_leftovers():
    with _LOCK:
        live = list(_LIVE)
    for s in live:
        try:
            s.stop(timeout=1)
        except Exception:  # noqa: BLE001
            pass


def scheduler_binary() -> Path:
    """The one-scheduler binary under test ($SCHED_BIN, see harness.workspace_binary)."""
    return workspace_binary("one-scheduler", "SCHED_BIN")


class Scheduler:
    """A one-scheduler process for `oned`. `config` is the text of a TOML configuration file
    (written to <workdir>/scheduler.toml); `args` are extra command-line flags; `auth_file`
    replaces oneadmin's credentials file."""

    def __init__(self, oned: Oned, workdir: Path | str, config: str | None = None,
                 args: list[str] | tuple[str, ...] = (), auth_file: Path | str | None = None):
        self.oned = oned
        self.auth_file = Path(auth_file) if auth_file else oned.auth_file
        self.workdir = Path(workdir)
        self.config = config
        self.args = list(args)
        self.stderr_path = self.workdir / "scheduler.stderr"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        assert self.oned.endpoint, "oned is not running"
        cmd = [str(scheduler_binary()), "--endpoint", self.oned.endpoint,
               "--auth-file", str(self.auth_file)]
        if self.config is not None:
            path = self.workdir / "scheduler.toml"
            path.write_text(self.config)
            cmd += ["--config", str(path)]
        return cmd + self.args

    def start(self) -> "Scheduler":
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.pop("RUST_LOG", None)
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=err,
                                         stderr=err, env=env, cwd=str(self.workdir),
                                         start_new_session=True)
        with _LOCK:
            _LIVE.add(self)
        return self

    def run_once(self, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs `one-scheduler --once` to completion and returns the finished process."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        return subprocess.run(self.command() + ["--once"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.workdir))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with _LOCK:
            _LIVE.discard(self)
        return self.proc.returncode

    def logs(self, tail: int = 100) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no scheduler log)"
        return "\n".join(lines[-tail:])
