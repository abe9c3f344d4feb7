"""The e2e harness: real oned daemons, throwaway PostgreSQL clusters, XSD validation.

The pytest fixtures that wrap these live in conftest.py (its docstring and docs/testing.md
describe them). Test files import helpers from here directly:

    from harness import Oned, xsd_check, parse_xml, rpc_fault

Nothing here uses a fixed port or path: every daemon gets its own data directory and
listens on 127.0.0.1:0, so tests can run in parallel (pytest-xdist) and beside a running
`scripts/start.sh` instance.
"""

from __future__ import annotations

import atexit
import http.client
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
import xmlrpc.client
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The XSD checker is test code of its own (tests/xsd), also run by the Rust tests.
sys.path.insert(0, str(REPO / "tests" / "xsd"))
import one_xsd_check  # noqa: E402

START_TIMEOUT = float(os.environ.get("ONED_START_TIMEOUT", "60"))
STOP_TIMEOUT = 20.0
RPC_TIMEOUT = 120.0


# --------------------------------------------------------------------------------------
# Locating things


def workspace_binary(name: str, env_var: str) -> Path:
    """A binary of this workspace: $<env_var>, else $CARGO_TARGET_DIR/debug/<name>, else
    <repo>/target/debug/<name>. Fails the calling test with a hint when none exists."""
    candidates = []
    if os.environ.get(env_var):
        candidates.append(Path(os.environ[env_var]))
    else:
        if os.environ.get("CARGO_TARGET_DIR"):
            t = Path(os.environ["CARGO_TARGET_DIR"])
            if not t.is_absolute():
                t = REPO / t
            candidates.append(t / "debug" / name)
        candidates.append(REPO / "target" / "debug" / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c.resolve()
    pytest.fail(
        "%s binary not found (looked at: %s). Build it with `cargo build -p %s` "
        "or point %s at it." % (name, ", ".join(str(c) for c in candidates), name, env_var),
        pytrace=False,
    )


def oned_binary() -> Path:
    """The oned binary under test ($ONED_BIN, see workspace_binary)."""
    return workspace_binary("oned", "ONED_BIN")


def xsd_checker() -> Path:
    """The project's XSD checker, tests/xsd/one_xsd_check.py (schemas beside it in
    tests/xsd/opennebula/)."""
    return REPO / "tests" / "xsd" / "one_xsd_check.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# XML helpers


def xsd_check(xml_text: str, schema: str | None = None) -> str:
    """Validates an OpenNebula XML body (e.g. the string a raw `one.*.info` call returns)
    against OpenNebula's XSDs (tests/xsd/opennebula) with tests/xsd/one_xsd_check.py;
    `schema` forces one .xsd file (e.g. "vm_pool_extended.xsd"). Fails the test with
    xmllint's output when invalid; skips it (with the reason) only when xmllint is missing.
    Returns the checker's verdict line."""
    assert isinstance(xml_text, str), f"xsd_check wants the XML text, got {type(xml_text)!r}"
    try:
        result = one_xsd_check.validate(xml_text, schema)
    except one_xsd_check.ToolMissing as e:
        pytest.skip(f"{e} (scripts/install-deps.sh)")
    shown = xml_text if len(xml_text) <= 6000 else xml_text[:6000] + "\n... (truncated)"
    assert result.ok, f"the body does not validate:\n{result.report('body')}\n--- body ---\n{shown}"
    return result.report("body")


def wait_for(what: str, check, timeout: float = 20.0, step: float = 0.1):
    """Polls `check()` until it returns a truthy value, which it returns; fails the test with
    `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last value {last!r}", pytrace=False)


def agent_children(oned_pid: int) -> list[int]:
    """The one-node-agent processes an oned started through local pipes (its children)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == oned_pid and cmd and cmd[0].endswith(b"one-node-agent"):
            pids.append(int(d.name))
    return pids


def parse_xml(xml_text: str) -> ET.Element:
    """Parses an XML body, failing the test with the body when it is not well-formed."""
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as e:
        pytest.fail(f"not well-formed XML ({e}):\n{xml_text[:4000]}", pytrace=False)


def rpc_fault(body: bytes) -> xmlrpc.client.Fault | None:
    """Decodes an XML-RPC response body; returns the Fault it carries, or None for a
    normal response. Fails the test when the body is not XML-RPC at all."""
    try:
        xmlrpc.client.loads(body)
    except xmlrpc.client.Fault as f:
        return f
    except Exception as e:  # noqa: BLE001 - any decoding error is a test failure
        pytest.fail(f"the response is not an XML-RPC document ({e!r}):\n{body[:2000]!r}", pytrace=False)
    return None


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float):
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


# --------------------------------------------------------------------------------------
# oned


_LIVE: set["Oned"] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _kill_leftovers():
    # Last resort (pytest aborted): never leave daemons behind.
    with _LIVE_LOCK:
        live = list(_LIVE)
    for o in live:
        try:
            o.kill()
        except Exception:  # noqa: BLE001
            pass


class OnedStartError(Exception):
    pass


class Oned:
    """A real oned process on its own data directory, listening on 127.0.0.1:0.

        o = Oned(tmp_path / "one")            # SQLite in the data dir
        o = Oned(dir, db_url="postgres://u:p@127.0.0.1:5432/one_1")
        o.start(); o.endpoint; o.admin_password
        one = o.client()                       # pyone as oneadmin
        o.raw_call("one.system.version", "oneadmin:wrong")   # the raw XML-RPC answer
        o.stop()  # SIGTERM, then SIGKILL after 20 s; returns the exit status
        o.kill()  # SIGKILL (crash simulation); start() again on the same dir afterwards

    oneadmin's password is chosen by the test (random unless given) and handed to oned
    through a file named by ONE_AUTH, which oned reads on its first start only.
    """

    def __init__(
        self,
        data_dir: Path | str,
        db_url: str | None = None,
        admin_password: str | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        binary: Path | str | None = None,
    ):
        self.data_dir = Path(data_dir).absolute()
        self.db_url = db_url
        self.admin_password = admin_password or "pw" + secrets.token_hex(8)
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.binary = Path(binary) if binary else None
        # Files of the harness, beside the data dir (not in it).
        self.auth_file = self.data_dir.with_name(self.data_dir.name + ".oneadmin_auth")
        self.stderr_path = self.data_dir.with_name(self.data_dir.name + ".stderr")
        self.proc: subprocess.Popen | None = None
        self.endpoint: str | None = None
        self._expect_exit = False
        self.starts = 0

    # -- process control --------------------------------------------------------------

    @property
    def session(self) -> str:
        """oneadmin's session string, `oneadmin:<password>`."""
        return f"oneadmin:{self.admin_password}"

    admin_session = session

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, listen: str = "127.0.0.1:0") -> list[str]:
        """The argv oned is started with."""
        binary = self.binary or oned_binary()
        cmd = [str(binary), "--data-dir", str(self.data_dir), "--listen", listen]
        if self.db_url:
            cmd += ["--db", self.db_url]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ONE_AUTH"] = str(self.auth_file)
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = START_TIMEOUT) -> "Oned":
        """Starts oned and waits (up to `timeout` s) for DIR/one_endpoint. Raises
        OnedStartError (the test fails) with oned's log if it dies or never gets ready."""
        assert not self.alive(), "oned is already running"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.auth_file.write_text(f"oneadmin:{self.admin_password}\n")
        os.chmod(self.auth_file, 0o600)
        endpoint_file = self.data_dir / "one_endpoint"
        endpoint_file.unlink(missing_ok=True)  # never read a previous run's endpoint
        self._expect_exit = False
        self.endpoint = None
        with open(self.stderr_path, "ab") as err:
            err.write(f"--- start #{self.starts + 1}: {' '.join(self.command())}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=self.environment(),
                cwd=str(self.data_dir.parent),
                start_new_session=True,
            )
        self.starts += 1
        with _LIVE_LOCK:
            _LIVE.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if endpoint_file.is_file():
                text = endpoint_file.read_text().strip()
                if text:
                    self.endpoint = text
                    break
            rc = self.proc.poll()
            if rc is not None:
                self._forget()
                raise OnedStartError(f"oned exited with status {rc} before it was ready\n{self.logs()}")
            if time.monotonic() > deadline:
                self.kill()
                raise OnedStartError(f"oned did not write {endpoint_file} within {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s. Returns the exit status (None if it
        was not running)."""
        if not self.proc:
            return None
        self._expect_exit = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._forget()
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL: the crash the durability tests simulate."""
        if not self.proc:
            return None
        self._expect_exit = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._forget()
        return self.proc.returncode

    def restart(self) -> "Oned":
        self.stop()
        return self.start()

    def _forget(self):
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def died_unexpectedly(self) -> bool:
        """True when the process exited although nobody stopped or killed it."""
        return self.proc is not None and not self._expect_exit and self.proc.poll() is not None

    def run_to_exit(self, timeout: float = 60, listen: str = "127.0.0.1:0") -> subprocess.CompletedProcess:
        """Runs a second oned with the same arguments and waits for it to exit (for tests of
        start-up refusals such as the data-dir lock). Kills it and fails if it keeps running."""
        try:
            return subprocess.run(
                self.command(listen),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.environment(),
                cwd=str(self.data_dir.parent),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"the second oned did not exit within {timeout} s; output:\n{e.stdout}\n{e.stderr}")

    def logs(self, tail: int = 200) -> str:
        """The last lines of DIR/oned.log and of oned's captured stdout/stderr."""
        parts = []
        for label, path in (("oned.log", self.data_dir / "oned.log"), ("stderr", self.stderr_path)):
            try:
                lines = path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                parts.append(f"--- {label}: (none at {path})")
                continue
            parts.append(f"--- {label} ({path}, last {min(tail, len(lines))} lines):")
            parts.extend(lines[-tail:])
        return "\n".join(parts)

    # -- clients ----------------------------------------------------------------------

    def client(self, user: str = "oneadmin", password: str | None = None):
        """A pyone client (pyone.OneServer) for `user` (oneadmin's password by default)."""
        import pyone

        assert self.endpoint, "oned is not running"
        if password is None:
            assert user == "oneadmin", "give the password of users other than oneadmin"
            password = self.admin_password
        return pyone.OneServer(self.endpoint, session=f"{user}:{password}")

    def create_user(self, name: str, password: str, group_ids: list[int] | None = None):
        """Creates a user (core auth) through the API as oneadmin; returns a pyone client
        logged in as that user, with attributes uid, username, password and session."""
        args = [name, password, "core"]
        if group_ids is not None:
            args.append(list(group_ids))
        uid = self.client().user.allocate(*args)
        assert isinstance(uid, int) and uid >= 0, f"one.user.allocate returned {uid!r}"
        c = self.client(name, password)
        c.uid, c.username, c.password, c.session = uid, name, password, f"{name}:{password}"
        return c

    def raw_call(self, method: str, *params, timeout: float = RPC_TIMEOUT):
        """Calls `method` with exactly `params` (the session string is params[0]) through
        xmlrpc.client, with no pyone mapping: returns the answer array as a list,
        e.g. [True, value, 0] or [False, message, code, resp_id, replication_index];
        raises xmlrpc.client.Fault for an XML-RPC fault."""
        assert self.endpoint, "oned is not running"
        proxy = xmlrpc.client.ServerProxy(self.endpoint, transport=_TimeoutTransport(timeout), allow_none=False)
        with proxy:
            return getattr(proxy, method)(*params)

    def admin_call(self, method: str, *params, timeout: float = RPC_TIMEOUT):
        """raw_call with oneadmin's session prepended."""
        return self.raw_call(method, self.session, *params, timeout=timeout)

    def admin_xml(self, method: str, *params) -> str:
        """admin_call that must succeed; returns the value (e.g. an object's XML text)."""
        r = self.admin_call(method, *params)
        assert isinstance(r, list) and len(r) >= 2, f"{method}: unexpected answer {r!r}"
        assert r[0] is True, f"{method}{params!r} failed: {r!r}"
        return r[1]

    def raw_post(self, body: bytes, content_type: str = "text/xml", path: str | None = None,
                 timeout: float = RPC_TIMEOUT) -> tuple[int, dict[str, str], bytes]:
        """POSTs raw bytes to the endpoint. Returns (HTTP status, headers, body)."""
        assert self.endpoint, "oned is not running"
        u = urllib.parse.urlsplit(self.endpoint)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            conn.putrequest("POST", path or u.path or "/RPC2")
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            view = memoryview(body)
            try:
                for i in range(0, len(view), 1 << 20):
                    conn.send(view[i:i + (1 << 20)])
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer (and close) before reading everything; the
                # answer can still be read below.
                pass
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def __repr__(self):
        return f"Oned({str(self.data_dir)!r}, db_url={self.db_url!r}, endpoint={self.endpoint!r})"


# --------------------------------------------------------------------------------------
# PostgreSQL


def pg_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin with initdb and pg_ctl ($PG_BIN_DIR wins)."""
    env = os.environ.get("PG_BIN_DIR")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    found = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            try:
                found.append((float(d.parent.name), d))
            except ValueError:
                found.append((0.0, d))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    if initdb:
        d = Path(initdb).resolve().parent
        if (d / "pg_ctl").exists():
            return d
    return None


class PgSkip(Exception):
    """PostgreSQL cannot be used here (reason in the message): the tests skip."""


class PgCluster:
    """A throwaway PostgreSQL cluster: initdb in a temporary directory, pg_ctl start on
    127.0.0.1:<free port>, one role for oned and one database per oned instance.

    As root, initdb/pg_ctl run as the `postgres` system user (`runuser -u postgres`):
    initdb refuses to run as root.
    """

    def __init__(self):
        self.bin = pg_bin_dir()
        if not self.bin:
            raise PgSkip("PostgreSQL server binaries (initdb, pg_ctl) not found: install "
                         "postgresql (scripts/install-deps.sh) or set PG_BIN_DIR")
        self.as_root = os.geteuid() == 0
        self.prefix: list[str] = []
        if self.as_root:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgSkip("running as root and there is no 'postgres' system user to run initdb as")
            runuser = shutil.which("runuser")
            if not runuser:
                raise PgSkip("running as root and runuser (util-linux) is missing")
            self.prefix = [runuser, "-u", "postgres", "--"]
            self.owner = (pw.pw_uid, pw.pw_gid)
        self.superuser = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.base = Path(tempfile.mkdtemp(prefix="one-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.port: int | None = None
        self.role = "one_test"
        self.password = secrets.token_hex(12)
        self._n = 0
        self._lock = threading.Lock()
        self.running = False

    def _run(self, args: list[str], as_pg: bool = True, check: bool = True, **kw) -> subprocess.CompletedProcess:
        cmd = (self.prefix if as_pg else []) + args
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(self.base), timeout=120, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{self.log_tail()}")
        return r

    def log_tail(self, n: int = 50) -> str:
        try:
            return "--- postgres.log:\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start(self) -> "PgCluster":
        self.sock.mkdir()
        if self.as_root:
            for p in (self.base, self.sock):
                os.chown(p, *self.owner)
        r = self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.superuser,
                       "--auth-local=trust", "--auth-host=scram-sha-256",
                       "-E", "UTF8", "--no-locale", "--no-sync"], check=False)
        if r.returncode != 0:
            msg = f"initdb failed ({r.returncode}): {(r.stderr or r.stdout).strip()[:500]}"
            if not self.as_root:
                raise PgSkip(msg)
            raise RuntimeError(msg)
        last = ""
        for _ in range(5):  # a free port can be taken between probe and bind: retry
            self.port = free_port()
            opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200")
            r = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                           "-w", "-t", "60", "-o", opts, "start"], check=False)
            if r.returncode == 0:
                self.running = True
                break
            last = f"{r.stdout}\n{r.stderr}\n{self.log_tail()}"
        else:
            raise RuntimeError(f"pg_ctl start failed:\n{last}")
        self.psql(f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.password}'")
        return self

    def psql(self, sql: str, db: str = "postgres") -> str:
        r = self._run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                       "-h", str(self.sock), "-p", str(self.port), "-U", self.superuser,
                       "-d", db, "-c", sql], as_pg=False)
        return r.stdout

    def create_database(self) -> str:
        """Creates a new empty database one_<n> owned by the test role; returns its URL."""
        with self._lock:
            self._n += 1
            name = f"one_{self._n}"
        self.psql(f"CREATE DATABASE {name} OWNER {self.role}")
        return f"postgres://{self.role}:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self):
        if self.running:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)
            self.running = False
        shutil.rmtree(self.base, ignore_errors=True)
