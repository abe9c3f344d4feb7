"""The project's XSD checker (tests/xsd/one_xsd_check.py) and the schemas it carries
(tests/xsd/opennebula): the schemas are OpenNebula's, unchanged; a body is checked against
the schema of its root element, one of several where schemas share a root, with the
namespace OpenNebula's answers leave out. No oned is needed."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

import one_xsd_check as checker
from harness import REPO, xsd_check

pytestmark = pytest.mark.db_independent

XSD_DIR = REPO / "tests" / "xsd" / "opennebula"
CLI = REPO / "tests" / "xsd" / "one_xsd_check.py"

RETRY_MESSAGE = "<HOOK_MESSAGE><ARGUMENTS>x</ARGUMENTS><HOOK_ID>3</HOOK_ID></HOOK_MESSAGE>"
STATE_MESSAGE = (
    "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>HOST</HOOK_OBJECT>"
    "<STATE>ERROR</STATE><RESOURCE_ID>1</RESOURCE_ID></HOOK_MESSAGE>"
)


@pytest.fixture(autouse=True)
def _xmllint():
    try:
        checker.validate("<VM_POOL/>")
    except checker.ToolMissing as e:
        pytest.skip(str(e))


def test_schemas_are_opennebulas_unchanged_with_license_and_provenance():
    listed = {}
    for line in (XSD_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*")] = digest
    on_disk = {p.name for p in XSD_DIR.glob("*.xsd")}
    assert on_disk == {n for n in listed if n.endswith(".xsd")}, "SHA256SUMS and the .xsd files differ"
    assert len(on_disk) >= 50
    for name, digest in listed.items():
        got = hashlib.sha256((XSD_DIR / name).read_bytes()).hexdigest()
        assert got == digest, f"{name} differs from the file taken from OpenNebula"
    assert "Apache License" in (XSD_DIR / "LICENSE").read_text()
    provenance = (XSD_DIR / "PROVENANCE.md").read_text()
    assert "f847cf2e9a" in provenance and "share/doc/xsd" in provenance


def test_every_object_root_has_its_schema():
    roots = checker.schemas_by_root()
    for root, schema in [("VM", "vm.xsd"), ("HOST_POOL", "host_pool.xsd"), ("USER", "user.xsd"),
                         ("ACL_POOL", "acl_pool.xsd"), ("VMTEMPLATE", "vmtemplate.xsd")]:
        assert roots[root] == (schema,)
    assert roots["VM_POOL"] == ("vm_pool.xsd", "vm_pool_extended.xsd")
    assert roots["VNET_POOL"] == ("vnet_pool.xsd", "vnet_pool_extended.xsd")
    assert set(roots["HOOK_MESSAGE"]) == {
        "hook_message_api.xsd", "hook_message_retry.xsd", "hook_message_state.xsd"}


def test_a_shared_root_is_valid_when_one_of_its_schemas_accepts_it():
    r = checker.validate(RETRY_MESSAGE)
    assert (r.ok, r.schema) == (True, "hook_message_retry.xsd")
    r = checker.validate(STATE_MESSAGE)
    assert (r.ok, r.schema) == (True, "hook_message_state.xsd")
    # --schema insists on one of them.
    r = checker.validate(RETRY_MESSAGE, schema="hook_message_state.xsd")
    assert not r.ok and [s for s, _ in r.errors] == ["hook_message_state.xsd"]


def test_an_invalid_body_is_rejected_by_every_candidate_with_xmllints_reasons():
    r = checker.validate("<HOOK_MESSAGE><HOOK_ID>x</HOOK_ID></HOOK_MESSAGE>")
    assert not r.ok
    assert [s for s, _ in r.errors] == list(checker.schemas_by_root()["HOOK_MESSAGE"])
    report = r.report("body")
    assert "<HOOK_MESSAGE> INVALID" in report and "HOOK_ID" in report
    r = checker.validate("<HOST><ID>x</ID><NAME>h</NAME></HOST>")
    assert not r.ok and "'x' is not a valid value" in r.errors[0][1]
    with pytest.raises(AssertionError, match="does not validate"):
        xsd_check("<HOST><ID>x</ID></HOST>")


def test_the_namespace_is_added_only_when_missing():
    assert checker.with_namespace('<?xml version="1.0"?>\n<!-- c --><VM_POOL a="1"/>') == (
        f'<?xml version="1.0"?>\n<!-- c --><VM_POOL xmlns="{checker.NAMESPACE}" a="1"/>')
    assert checker.validate(f'<USER_POOL xmlns="{checker.NAMESPACE}"/>').errors[0][0] == "user_pool.xsd"
    assert checker.validate("<VM_POOL/>").ok
    assert checker.validate(f'<VM_POOL xmlns="{checker.NAMESPACE}"></VM_POOL>').ok
    # A namespace of its own is kept, and is not OpenNebula's.
    assert not checker.validate('<VM_POOL xmlns="urn:other"/>').ok


def test_unknown_roots_and_malformed_documents_are_invalid():
    r = checker.validate("<NOT_AN_OBJECT/>")
    assert not r.ok and "no schema declares the root element <NOT_AN_OBJECT>" in r.report()
    r = checker.validate("<VM_POOL><VM>")
    assert not r.ok and r.root is None and "not well-formed" in r.report()
    r = checker.validate("<VM_POOL/>", schema="../vm.xsd")
    assert not r.ok and "no schema named" in r.report()


def test_command_line_exit_status_and_output(tmp_path):
    good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
    good.write_text(RETRY_MESSAGE)
    bad.write_text("<HOST><ID>x</ID></HOST>")
    run = lambda *a, stdin=None: subprocess.run(  # noqa: E731
        [sys.executable, str(CLI), *a], input=stdin, capture_output=True, text=True, timeout=60)
    r = run(str(good))
    assert r.returncode == 0 and "valid (hook_message_retry.xsd)" in r.stdout, r
    r = run(str(good), str(bad))
    assert r.returncode == 1 and "bad.xml: <HOST> INVALID" in r.stdout, r
    r = run("--schema", "vm_pool_extended.xsd", "-", stdin="<VM_POOL/>")
    assert r.returncode == 0 and "stdin: <VM_POOL> valid (vm_pool_extended.xsd)" in r.stdout, r
    assert run().returncode == 2
    assert run(str(tmp_path / "missing.xml")).returncode == 2
