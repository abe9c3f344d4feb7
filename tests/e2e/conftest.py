"""pytest fixtures for the end-to-end suite: real oned daemons driven over XML-RPC.

Every test talks to a real `oned` process (the binary from $ONED_BIN, else
$CARGO_TARGET_DIR/debug/oned, else <repo>/target/debug/oned) started on 127.0.0.1:0 with a
data directory of its own under the test's tmp_path: nothing is fixed, so tests may run in
parallel (pytest-xdist) and beside a daemon started by scripts/start.sh.

Database: SQLite in the data dir by default; with ONE_TEST_DB=postgres a throwaway
PostgreSQL cluster is started once per session and every oned gets a database of its own.

Fixtures
  oned            function scope. A started harness.Oned (fresh data dir and database).
                  .endpoint, .admin_password, .session ("oneadmin:<pw>"), .data_dir,
                  .client(user="oneadmin", password=None) -> pyone.OneServer,
                  .raw_call(method, *params) -> the raw answer list (params include the
                  session; XML-RPC faults raise xmlrpc.client.Fault),
                  .admin_call(method, *params) (raw_call with oneadmin's session),
                  .admin_xml(method, *params) (must succeed; returns the value, e.g. XML text),
                  .raw_post(bytes) -> (status, headers, body),
                  .stop() (SIGTERM, then SIGKILL), .kill() (SIGKILL), .start(), .restart(),
                  .run_to_exit() (run a second oned with the same arguments), .logs().
  one             function scope. pyone client of `oned` as oneadmin.
  make_user       function scope. make_user(name, password, group_ids=None) creates a core
                  user in `oned` through one.user.allocate and returns a pyone client logged
                  in as that user (attributes uid, username, password, session).
  oned_factory    function scope. oned_factory(name="one", start=True, **Oned kwargs) ->
                  another Oned (own data dir tmp_path/name, own database); stopped at teardown.
                  For tests that need several daemons or control start-up themselves.
  shared_oned     module scope. One daemon for a whole module: only for tests that do not
                  change state other tests of the module look at. shared_one: its client.
  new_db_url      session scope. new_db_url() -> None (SQLite) or a new PostgreSQL URL.
  db_backend      session scope. "sqlite" or "postgres".
  xsd             the harness.xsd_check function, as a fixture.

Helpers (import them: `from harness import xsd_check, parse_xml, rpc_fault, Oned`)
  xsd_check(xml_text, schema=None)  validate a body against OpenNebula's XSDs with the
                                    project's checker, tests/xsd/one_xsd_check.py (skips
                                    with the reason only if xmllint is missing)
  parse_xml(xml_text)               ElementTree root, failing the test on malformed XML
  rpc_fault(body_bytes)             the xmlrpc.client.Fault in a raw response body, or None

A daemon that dies while a test runs (not stopped or killed by the test) fails that test
at teardown; oned's log (DIR/oned.log and its captured stderr) is printed at teardown and
shown by pytest for failing tests. pyone parses XML answers into objects: use raw_call /
admin_xml to get the text for xsd_check.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness import Oned, PgCluster, PgSkip, oned_binary, xsd_check, xsd_checker

BACKENDS = ("sqlite", "postgres")


def _backend() -> str:
    return os.environ.get("ONE_TEST_DB", "sqlite").strip().lower() or "sqlite"


def pytest_configure(config):
    if _backend() not in BACKENDS:
        raise pytest.UsageError(f"ONE_TEST_DB must be one of {', '.join(BACKENDS)}, not {_backend()!r}")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers",
        "db_independent: drives real hosts (libvirt domains, namespaces, sshd) and tests nothing "
        "of the database: runs with SQLite only, so CI does not spend its time twice",
    )


def pytest_collection_modifyitems(config, items):
    if _backend() == "sqlite":
        return
    skip = pytest.mark.skip(reason="db_independent: real-host test, run by the SQLite stage only")
    for item in items:
        if item.get_closest_marker("db_independent"):
            item.add_marker(skip)


def pytest_report_header(config):
    binary = os.environ.get("ONED_BIN") or "(auto: $CARGO_TARGET_DIR/debug/oned or target/debug/oned)"
    return [
        f"oned binary: {binary}",
        f"database: {_backend()} (ONE_TEST_DB)",
        f"XSD checker: {xsd_checker()}"
        f"{'' if shutil.which('xmllint') else ' (xmllint MISSING: XSD checks will skip)'}",
    ]


@pytest.fixture(scope="session")
def db_backend() -> str:
    return _backend()


@pytest.fixture(scope="session")
def oned_bin() -> Path:
    return oned_binary()


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's throwaway PostgreSQL cluster (only in ONE_TEST_DB=postgres runs)."""
    try:
        cluster = PgCluster()
    except PgSkip as e:
        pytest.skip(f"PostgreSQL: {e}")
    try:
        cluster.start()
    except PgSkip as e:
        cluster.stop()
        pytest.skip(f"PostgreSQL: {e}")
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def new_db_url(request, db_backend):
    if db_backend == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        return cluster.create_database
    return lambda: None


def _teardown(daemons: list[Oned]):
    died = []
    for o in daemons:
        if o.died_unexpectedly():
            died.append(f"{o!r} died with status {o.proc.returncode}\n{o.logs()}")
        o.stop()
        # Shown by pytest in "Captured stdout teardown" when the test failed.
        print(f"\n===== {o!r}\n{o.logs(tail=80)}")
    if died:
        pytest.fail("oned died during the test:\n" + "\n".join(died), pytrace=False)


class _Factory:
    def __init__(self, base: Path, new_db_url, oned_bin: Path):
        self.base = base
        self.new_db_url = new_db_url
        self.oned_bin = oned_bin
        self.daemons: list[Oned] = []

    def __call__(self, name: str = "one", start: bool = True, **kwargs) -> Oned:
        kwargs.setdefault("db_url", self.new_db_url())
        kwargs.setdefault("binary", self.oned_bin)
        o = Oned(self.base / name, **kwargs)
        self.daemons.append(o)
        if start:
            o.start()
        return o


@pytest.fixture
def oned_factory(tmp_path, new_db_url, oned_bin):
    f = _Factory(tmp_path, new_db_url, oned_bin)
    yield f
    _teardown(f.daemons)


@pytest.fixture
def oned(oned_factory) -> Oned:
    return oned_factory("one")


@pytest.fixture
def one(oned):
    return oned.client()


@pytest.fixture
def make_user(oned):
    return oned.create_user


@pytest.fixture(scope="module")
def shared_oned(tmp_path_factory, new_db_url, oned_bin):
    f = _Factory(tmp_path_factory.mktemp("shared"), new_db_url, oned_bin)
    o = f("one")
    yield o
    _teardown(f.daemons)


@pytest.fixture(scope="module")
def shared_one(shared_oned):
    return shared_oned.client()


@pytest.fixture
def xsd():
    return xsd_check
