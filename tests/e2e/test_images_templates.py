"""Images and VM templates: one.image.*, one.imagepool.info, one.template.*,
one.templatepool.info through pyone, every body checked against the XSDs; allocation rules,
image states (LOCKED while the frontend agent copies or makes an image, READY after),
clones, the common methods, recursive template operations, instantiation and the VM disk
contract. The storage side itself (copies, URLs, uploads, faults) is test_storage_images.py."""

from __future__ import annotations

import re

import pyone
import pytest

from harness import parse_xml, xsd_check
from storage_util import HttpServer, wait_image

IMAGE_DS = 1
FILE_DS = 2
SYSTEM_DS = 0

# OpenNebula answers failed allocations with INTERNAL (0x2000).
ALLOCATE = 0x2000
ACTION = 0x0800
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
INTERNAL = 0x2000
LOCKED = 0x8000
RPC_API = 0x1000

# Image states
READY, USED, DISABLED, LOCKED_ST, CLONE, USED_PERS = 1, 2, 3, 4, 6, 8


# ---------------------------------------------------------------------------------------
# Helpers


def raw(oned, method, *params, session=None):
    return oned.raw_call(method, session or oned.session, *params)


def error_of(oned, method, *params, session=None):
    """A failed raw answer: (message, code)."""
    r = raw(oned, method, *params, session=session)
    assert r[0] is False, f"{method}{params!r} should fail: {r!r}"
    return r[1], r[2]


def image_xml(oned, iid, session=None) -> str:
    r = raw(oned, "one.image.info", iid, False, session=session)
    assert r[0] is True, r
    xsd_check(r[1])
    return r[1]


def image(oned, iid, session=None):
    return parse_xml(image_xml(oned, iid, session))


def ipool(oned, session=None, flt=-2, start=-1, end=-1):
    r = raw(oned, "one.imagepool.info", flt, start, end, session=session)
    assert r[0] is True, r
    xsd_check(r[1])
    return parse_xml(r[1])


def tmpl(oned, tid, session=None):
    r = raw(oned, "one.template.info", tid, False, False, session=session)
    assert r[0] is True, r
    xsd_check(r[1])
    return parse_xml(r[1])


def tpool(oned, session=None, flt=-2):
    r = raw(oned, "one.templatepool.info", flt, -1, -1, session=session)
    assert r[0] is True, r
    xsd_check(r[1])
    return parse_xml(r[1])


def ds_images(oned, ds_id):
    root = parse_xml(oned.admin_xml("one.datastore.info", ds_id))
    return [int(e.text) for e in root.findall("IMAGES/ID")]


def datablock(one, name="db", size=10, extra="", oned=None) -> int:
    """An empty datablock, READY (the frontend agent makes it while it is LOCKED)."""
    iid = one.image.allocate(f'NAME="{name}"\nTYPE="DATABLOCK"\nSIZE="{size}"\n{extra}', IMAGE_DS)
    assert isinstance(iid, int) and iid >= 0
    wait_image(oned or ONED[0], iid)
    return iid


# The daemon of the running test, for helpers called with pyone clients only.
ONED = [None]


@pytest.fixture(autouse=True)
def _current_oned(request):
    if "oned" in request.fixturenames:
        ONED[0] = request.getfixturevalue("oned")
    yield
    ONED[0] = None


@pytest.fixture(scope="module")
def http():
    """A local HTTP server: `/stall/N` keeps an image LOCKED for the test's length."""
    srv = HttpServer()
    yield srv
    srv.stop()


def locked_image(one, http, name="l", ds=IMAGE_DS, extra=""):
    """An image that stays LOCKED: its URL stalls after the headers."""
    return one.image.allocate(f'NAME="{name}"\nPATH="{http.url}/stall/1"\n{extra}', ds)


def state(oned, iid) -> int:
    return int(image(oned, iid).findtext("STATE"))


def vm_supported(oned) -> bool:
    """Whether VM allocation is implemented yet (another engineer's work)."""
    r = raw(oned, "one.vm.allocate", 'NAME="probe"\nCPU="0.1"\nMEMORY="16"', True)
    if r[0] is True:
        raw(oned, "one.vm.action", "terminate-hard", r[1])
        return True
    return "not implemented" not in str(r[1])


# ---------------------------------------------------------------------------------------
# one.image.allocate


def test_allocate_empty_datablock_is_ready(oned, one):
    iid = datablock(one, "data", 100, 'DESCRIPTION="scratch <disk>"\nFORMAT="qcow2"')
    # The frontend agent made the file: a qcow2 image.
    assert open(image(oned, iid).findtext("SOURCE"), "rb").read(4) == b"QFI\xfb"
    root = image(oned, iid)
    assert root.tag == "IMAGE"
    assert root.findtext("NAME") == "data"
    assert root.findtext("UNAME") == "oneadmin"
    assert root.findtext("TYPE") == "2"
    assert root.findtext("PERSISTENT") == "0"
    assert root.findtext("STATE") == str(READY)
    assert root.findtext("SIZE") == "100"
    assert root.findtext("FORMAT") == "qcow2"
    assert root.findtext("DATASTORE_ID") == str(IMAGE_DS)
    assert root.findtext("DATASTORE") == "default"
    assert root.findtext("CLONING_ID") == "-1"
    ds = parse_xml(oned.admin_xml("one.datastore.info", IMAGE_DS))
    src = root.findtext("SOURCE")
    assert re.fullmatch(re.escape(ds.findtext("BASE_PATH").rstrip("/")) + r"/[0-9a-f]{32}", src), src
    assert root.findtext("PATH") in (None, "")
    t = root.find("TEMPLATE")
    assert t.findtext("DESCRIPTION") == "scratch <disk>"
    assert t.findtext("DEV_PREFIX") == "sd"
    for gone in ("NAME", "TYPE", "SIZE", "FORMAT", "PATH", "SOURCE", "PERSISTENT"):
        assert t.find(gone) is None, gone
    assert root.findtext("SNAPSHOTS/ALLOW_ORPHANS") == "NO"
    assert root.find("BACKUP_INCREMENTS") is not None
    assert iid in ds_images(oned, IMAGE_DS)

    # pyone binds the document.
    img = one.image.info(iid)
    assert img.ID == iid and img.NAME == "data" and img.STATE == READY

    # Defaults: OS type needs SIZE without PATH; PERSISTENT=YES; a DEV_PREFIX kept.
    os_id = one.image.allocate('NAME="os"\nSIZE="5"\nPERSISTENT="YES"\nDEV_PREFIX="vd"', IMAGE_DS)
    r = wait_image(oned, os_id)
    assert r.findtext("TYPE") == "0" and r.findtext("PERSISTENT") == "1"
    assert r.findtext("TEMPLATE/DEV_PREFIX") == "vd"
    assert r.findtext("FORMAT") == "raw"


def test_allocate_with_local_path_copies_it(oned, one, tmp_path, http):
    f = tmp_path / "disk.img"
    data = b"\1" * (3 * 1024 * 1024 + 5)
    f.write_bytes(data)
    iid = one.image.allocate(f'NAME="fromfile"\nPATH="{f}"', IMAGE_DS)
    root = wait_image(oned, iid)
    assert root.findtext("PATH") == str(f)
    assert root.findtext("SIZE") == "4"
    assert root.findtext("FORMAT") == "raw"
    src = root.findtext("SOURCE")
    assert re.search(r"/[0-9a-f]{32}$", src)
    assert open(src, "rb").read() == data and f.read_bytes() == data
    xsd_check(image_xml(oned, iid))

    # A URL is downloaded; CDROMs get no DEV_PREFIX.
    http.files["a.iso"] = b"\0" * 4096
    url = one.image.allocate(f'NAME="iso"\nTYPE="CDROM"\nPATH="{http.url}/f/a.iso"', IMAGE_DS)
    r = wait_image(oned, url)
    assert r.findtext("SIZE") == "1"
    assert r.find("TEMPLATE/DEV_PREFIX") is None

    # A local file that does not exist.
    with pytest.raises(pyone.OneInternalException, match=r"Cannot parse image SIZE: Cannot determine size for /nonexistent/x"):
        one.image.allocate('NAME="missing"\nPATH="/nonexistent/x"', IMAGE_DS)

    # Nothing from oned's own data directory (credentials, keys, other users' images) ...
    inside = oned.data_dir / "one_auth"
    msg, code = error_of(oned, "one.image.allocate", f'NAME="steal"\nPATH="{inside}"', IMAGE_DS)
    assert code == ALLOCATE and "Not allowed to copy images from" in msg, msg
    # ... not even when the datastore lists it in SAFE_DIRS.
    one.datastore.update(IMAGE_DS, f'SAFE_DIRS="{inside.parent}"', 1)
    msg, code = error_of(oned, "one.image.allocate", f'NAME="safe"\nPATH="{inside}"', IMAGE_DS)
    assert code == ALLOCATE and "Not allowed to copy images from" in msg, msg

    # Files in the files datastore.
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    kid = one.image.allocate(f'NAME="kernel"\nTYPE="KERNEL"\nPATH="{k}"\nPERSISTENT="YES"', FILE_DS)
    kr = wait_image(oned, kid)
    assert kr.findtext("TYPE") == "3" and kr.findtext("PERSISTENT") == "0"
    assert kr.findtext("SIZE") == "1"
    assert kid in ds_images(oned, FILE_DS)


def test_allocate_with_source(oned, one, make_user):
    iid = one.image.allocate('NAME="src"\nSOURCE="/srv/images/a.qcow2"\nSIZE="20"\nFORMAT="qcow2"', IMAGE_DS)
    root = image(oned, iid)
    assert root.findtext("STATE") == str(READY)
    assert root.findtext("SOURCE") == "/srv/images/a.qcow2"
    assert root.findtext("FORMAT") == "qcow2"

    # SOURCE is restricted to administrators (IMAGE_RESTRICTED_ATTR).
    u = make_user("alice", "pw")
    with pytest.raises(pyone.OneAuthorizationException, match="restricted attribute SOURCE"):
        u.image.allocate('NAME="src"\nSOURCE="/srv/images/a.qcow2"\nSIZE="20"\nFORMAT="raw"', IMAGE_DS)

    msg, code = error_of(oned, "one.image.allocate", 'NAME="s2"\nSOURCE="/x"\nSIZE="1"', IMAGE_DS)
    assert code == ALLOCATE and msg == "[one.image.allocate] Error allocating a new image. SOURCE needs FORMAT to be set."
    msg, code = error_of(oned, "one.image.allocate", 'NAME="s3"\nSOURCE="/x"\nPATH="/y"\nSIZE="1"\nFORMAT="raw"', IMAGE_DS)
    assert code == ALLOCATE and msg.endswith("PATH and SOURCE cannot be both set.")
    msg, code = error_of(oned, "one.image.allocate", 'NAME="s4"\nSOURCE="/x"\nFORMAT="raw"', IMAGE_DS)
    assert code == INTERNAL and msg.endswith("Cannot parse image SIZE: Wrong number or missing SIZE attribute.")


def test_allocate_errors(oned, one):
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting datastore \[77\]"):
        one.image.allocate('NAME="x"\nSIZE="1"\nTYPE="DATABLOCK"', 77)
    msg, code = error_of(oned, "one.image.allocate", 'NAME="x"\nSIZE="1"', SYSTEM_DS)
    assert code == ALLOCATE
    assert msg == ("[one.image.allocate] Error allocating a new image. "
                   "New images can only be allocated in a files or image datastore.")
    msg, code = error_of(oned, "one.image.allocate", 'NAME="k"\nTYPE="KERNEL"\nPATH="/boot/x"', IMAGE_DS)
    assert code == ALLOCATE and "cannot be registered in an IMAGE_DS datastore" in msg
    msg, code = error_of(oned, "one.image.allocate", 'NAME="o"\nTYPE="OS"\nSIZE="1"', FILE_DS)
    assert code == ALLOCATE and "can be registered in a FILE_DS datastore" in msg
    msg, code = error_of(oned, "one.image.allocate", 'NAME="o"\nTYPE="FLOPPY"\nSIZE="1"', IMAGE_DS)
    assert code == ALLOCATE and "Unknown type FLOPPY" in msg
    msg, code = error_of(oned, "one.image.allocate", 'TYPE="DATABLOCK"\nSIZE="1"', IMAGE_DS)
    assert code == ALLOCATE and msg.endswith("Invalid NAME, it cannot be empty")
    with pytest.raises(pyone.OneInternalException, match="Wrong number or missing SIZE"):
        one.image.allocate('NAME="nosize"\nTYPE="DATABLOCK"', IMAGE_DS)
    with pytest.raises(pyone.OneInternalException, match="Either PATH or SOURCE are required for CDROM"):
        one.image.allocate('NAME="cd"\nTYPE="CDROM"', IMAGE_DS)
    with pytest.raises(pyone.OneApiException, match="Error parsing template"):
        one.image.allocate('NAME = [ unterminated', IMAGE_DS)

    datablock(one, "dup")
    msg, code = error_of(oned, "one.image.allocate", 'NAME="dup"\nTYPE="DATABLOCK"\nSIZE="1"', IMAGE_DS)
    assert code == ALLOCATE and re.search(r"NAME is already taken by IMAGE \d+\.$", msg), msg
    # Nothing was registered by the failures.
    assert len(ipool(oned).findall("IMAGE")) == 1


def test_user_images_and_authorization(oned, one, make_user):
    alice = make_user("alice", "pw")
    bob = make_user("bob", "pw")
    a = datablock(alice, "mine")
    root = image(oned, a, session=alice.session)
    assert root.findtext("UNAME") == "alice"
    assert root.findtext("PERMISSIONS/OWNER_U") == "1" and root.findtext("PERMISSIONS/OTHER_U") == "0"

    # Same name for another owner is fine.
    b = datablock(bob, "mine")
    assert b != a

    with pytest.raises(pyone.OneAuthorizationException, match=rf"Not authorized to perform USE IMAGE \[{a}\]"):
        bob.image.info(a)
    with pytest.raises(pyone.OneAuthorizationException):
        bob.image.delete(a)
    with pytest.raises(pyone.OneAuthorizationException):
        bob.image.enable(a, False)
    with pytest.raises(pyone.OneAuthorizationException):
        bob.image.clone(a, "stolen")
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting image \[999\]"):
        bob.image.info(999)

    # Pool filters: bob sees only his own; oneadmin sees both.
    names = [(e.findtext("ID"), e.findtext("UNAME")) for e in ipool(oned, session=bob.session).findall("IMAGE")]
    assert names == [(str(b), "bob")]
    assert len(ipool(oned).findall("IMAGE")) == 2
    assert [e.findtext("ID") for e in ipool(oned, flt=alice.uid).findall("IMAGE")] == [str(a)]
    assert [e.findtext("ID") for e in ipool(oned, start=b, end=b).findall("IMAGE")] == [str(b)]
    with pytest.raises(pyone.OneApiException):
        one.imagepool.info(-9, -1, -1)

    # Making it readable by others lets bob use (info) it.
    alice.image.chmod(a, 1, 1, 0, 0, 0, 0, 1, 0, 0)
    assert image(oned, a, session=bob.session).findtext("PERMISSIONS/OTHER_U") == "1"
    # The files datastore is usable by every user (OTHER_U): allocate works.
    http = HttpServer()
    http.files["ctx"] = b"context"
    try:
        ctx = alice.image.allocate(f'NAME="ctx"\nTYPE="CONTEXT"\nPATH="{http.url}/f/ctx"', FILE_DS)
        wait_image(oned, ctx)
    finally:
        http.stop()


# ---------------------------------------------------------------------------------------
# state changes


def test_enable_disable(oned, one, http):
    iid = datablock(one)
    assert one.image.enable(iid, False) == iid
    assert state(oned, iid) == DISABLED
    assert image(oned, iid).findtext("PREV_STATE") == str(READY)
    one.image.enable(iid, False)  # already disabled: no-op
    one.image.enable(iid, True)
    assert state(oned, iid) == READY

    locked = locked_image(one, http)
    with pytest.raises(pyone.OneInternalException, match=r"Could not disable image: Image cannot be in state LOCKED\."):
        one.image.enable(locked, False)
    with pytest.raises(pyone.OneNoExistsException):
        one.image.enable(4242, True)


def test_persistent_and_chtype(oned, one, tmp_path):
    iid = datablock(one)
    one.image.persistent(iid, True)
    assert image(oned, iid).findtext("PERSISTENT") == "1"
    one.image.persistent(iid, True)  # unchanged
    one.image.persistent(iid, False)
    assert image(oned, iid).findtext("PERSISTENT") == "0"

    k = tmp_path / "k"
    k.write_bytes(b"x")
    kid = one.image.allocate(f'NAME="k"\nTYPE="KERNEL"\nPATH="{k}"', FILE_DS)
    wait_image(oned, kid)
    with pytest.raises(pyone.OneActionException, match="KERNEL, RAMDISK and CONTEXT must be non-persistent"):
        one.image.persistent(kid, True)

    one.image.chtype(iid, "CDROM")
    assert image(oned, iid).findtext("TYPE") == "1"
    one.image.chtype(iid, "os")
    assert image(oned, iid).findtext("TYPE") == "0"
    with pytest.raises(pyone.OneActionException, match="incompatible type for the current datastore"):
        one.image.chtype(iid, "KERNEL")
    one.image.chtype(kid, "RAMDISK")
    assert image(oned, kid).findtext("TYPE") == "4"
    with pytest.raises(pyone.OneActionException):
        one.image.chtype(kid, "DATABLOCK")
    with pytest.raises(pyone.OneInternalException, match="Unknown type FLOPPY"):
        one.image.chtype(iid, "FLOPPY")
    with pytest.raises(pyone.OneNoExistsException):
        one.image.chtype(999, "OS")


# ---------------------------------------------------------------------------------------
# clone / delete


def test_clone_states_and_delete(oned, one, http):
    src = datablock(one, "base", 8)
    c = one.image.clone(src, "copy")
    cr = image(oned, c)
    # LOCKED while the frontend agent copies, tied to its source.
    assert cr.findtext("STATE") in (str(LOCKED_ST), str(READY))
    assert cr.findtext("SIZE") == "8"
    assert cr.findtext("TYPE") == "2"
    assert cr.findtext("PATH") == image(oned, src).findtext("SOURCE")
    assert c in ds_images(oned, IMAGE_DS)
    cr = wait_image(oned, c)
    assert cr.findtext("SOURCE") != image(oned, src).findtext("SOURCE")
    assert open(cr.findtext("SOURCE"), "rb").read() == open(image(oned, src).findtext("SOURCE"), "rb").read()
    # The clone is done: the source is free again.
    sr = image(oned, src)
    assert sr.findtext("STATE") == str(READY) and sr.findtext("CLONING_OPS") == "0"
    assert sr.find("CLONES/ID") is None
    assert one.image.delete(c) == c
    with pytest.raises(pyone.OneNoExistsException):
        one.image.info(c)
    assert c not in ds_images(oned, IMAGE_DS)

    # A persistent source keeps its persistence in the clone.
    one.image.persistent(src, True)
    c2 = one.image.clone(src, "copy2", IMAGE_DS)
    assert image(oned, c2).findtext("PERSISTENT") == "1"
    wait_image(oned, c2)
    assert state(oned, src) == READY
    # Cloning twice: name taken.
    msg, code = error_of(oned, "one.image.clone", src, "copy2")
    assert code == ALLOCATE and "NAME is already taken by IMAGE" in msg
    # A LOCKED image cannot be cloned, nor deleted without force.
    l = locked_image(one, http)
    msg, code = error_of(oned, "one.image.clone", l, "copy3")
    assert code == ALLOCATE and msg.endswith("Cannot clone image in state: LOCKED")
    with pytest.raises(pyone.OneInternalException, match="Image locked, use --force flag"):
        one.image.delete(l)
    assert one.image.delete(l, True) == l
    one.image.delete(c2)
    assert one.image.delete(src) == src
    assert src not in ds_images(oned, IMAGE_DS)


def test_clone_errors(oned, one, tmp_path):
    src = datablock(one)
    with pytest.raises(pyone.OneActionException, match="Clone only supported for IMAGE_DS Datastores"):
        one.image.clone(src, "x", FILE_DS)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting datastore \[55\]"):
        one.image.clone(src, "x", 55)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting image \[555\]"):
        one.image.clone(555, "x")
    k = tmp_path / "k"
    k.write_bytes(b"x")
    kid = one.image.allocate(f'NAME="k"\nTYPE="KERNEL"\nPATH="{k}"', FILE_DS)
    wait_image(oned, kid)
    with pytest.raises(pyone.OneActionException, match="KERNEL images cannot be cloned."):
        one.image.clone(kid, "kk")
    one.image.enable(src, False)
    msg, code = error_of(oned, "one.image.clone", src, "y")
    assert code == ALLOCATE and msg.endswith("Cannot clone image in state: DISABLED")


def test_delete_errors(oned, one, make_user, http):
    with pytest.raises(pyone.OneNoExistsException, match=r"\[one.image.delete\] Error getting image \[31\]"):
        one.image.delete(31)
    iid = datablock(one)
    one.image.lock(iid, 2)  # MANAGE lock blocks delete
    msg, code = error_of(oned, "one.image.delete", iid)
    assert code == LOCKED and msg == f"[one.image.delete] The resource image is locked. [{iid}]."
    one.image.unlock(iid)
    one.image.delete(iid)

    # A user may not force-delete his own LOCKED image (needs ADMIN), as in OpenNebula.
    alice = make_user("alice", "pw")
    l = locked_image(alice, http, extra='TYPE="DATABLOCK"')
    with pytest.raises(pyone.OneAuthorizationException, match=rf"ADMIN IMAGE \[{l}\]"):
        alice.image.delete(l, True)
    one.image.delete(l, True)


def test_snapshot_calls_and_restore(oned, one, tmp_path):
    iid = datablock(one)
    for m in (one.image.snapshotdelete, one.image.snapshotrevert, one.image.snapshotflatten):
        with pytest.raises(pyone.OneActionException, match="Snapshot does not exist"):
            m(iid, 0)
        with pytest.raises(pyone.OneNoExistsException):
            m(999, 0)
    one.image.enable(iid, False)
    with pytest.raises(pyone.OneActionException, match="Cannot delete snapshot in state DISABLED"):
        one.image.snapshotdelete(iid, 0)
    k = tmp_path / "k"
    k.write_bytes(b"x")
    kid = one.image.allocate(f'NAME="k"\nTYPE="CONTEXT"\nPATH="{k}"', FILE_DS)
    wait_image(oned, kid)
    with pytest.raises(pyone.OneActionException, match="does not have snapshots"):
        one.image.snapshotrevert(kid, 1)
    with pytest.raises(pyone.OneActionException, match="Can only restore images of type BACKUP"):
        one.image.restore(iid, IMAGE_DS, "")


# ---------------------------------------------------------------------------------------
# common methods


def test_image_common_methods(oned, one, make_user):
    iid = datablock(one, "c", extra='LABEL="a"')
    one.image.update(iid, 'LABEL="b"\nOTHER="x"', 1)
    t = image(oned, iid).find("TEMPLATE")
    assert t.findtext("LABEL") == "b" and t.findtext("OTHER") == "x" and t.findtext("DEV_PREFIX") == "sd"
    one.image.update(iid, 'ONLY="1"', 0)
    t = image(oned, iid).find("TEMPLATE")
    assert t.findtext("ONLY") == "1" and t.find("LABEL") is None
    with pytest.raises(pyone.OneApiException):
        one.image.update(iid, 'X="1"', 7)

    one.image.rename(iid, "renamed")
    assert image(oned, iid).findtext("NAME") == "renamed"
    datablock(one, "other")
    with pytest.raises(pyone.OneActionException, match="NAME is already taken by IMAGE"):
        one.image.rename(iid, "other")

    one.image.chmod(iid, 1, 1, 1, 1, 0, 0, 1, 0, 0)
    p = image(oned, iid).find("PERMISSIONS")
    assert [p.findtext(x) for x in ("OWNER_A", "GROUP_U", "OTHER_U", "OTHER_M")] == ["1", "1", "1", "0"]

    alice = make_user("alice", "pw")
    one.image.chown(iid, alice.uid, 1)
    r = image(oned, iid)
    assert r.findtext("UID") == str(alice.uid) and r.findtext("UNAME") == "alice"
    assert r.findtext("GID") == "1" and r.findtext("GNAME") == "users"
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting user \[99\]"):
        one.image.chown(iid, 99, -1)
    # The new owner already has one with that name.
    datablock(alice, "same")
    same = datablock(one, "same")
    with pytest.raises(pyone.OneActionException, match='already has a IMAGE named "same"'):
        one.image.chown(same, alice.uid, -1)
    # A user cannot give his image away.
    with pytest.raises(pyone.OneAuthorizationException):
        alice.image.chown(iid, 0, -1)

    one.image.lock(iid, 1)
    lk = image(oned, iid).find("LOCK")
    assert lk is not None and lk.findtext("LOCKED") == "1"
    with pytest.raises(pyone.OneException) as e:
        one.image.rename(iid, "zzz")
    assert "locked" in str(e.value)
    one.image.unlock(iid)
    assert image(oned, iid).find("LOCK") is None


# ---------------------------------------------------------------------------------------
# VM templates


def test_template_allocate_info_pool(oned, one, make_user):
    tid = one.template.allocate('NAME="web"\nCPU="1"\nMEMORY="128"\nDISK=[IMAGE_ID="3"]\nDESCRIPTION="<b>"')
    root = tmpl(oned, tid)
    assert root.tag == "VMTEMPLATE"
    assert root.findtext("NAME") == "web"
    assert root.findtext("UNAME") == "oneadmin"
    assert int(root.findtext("REGTIME")) > 0
    t = root.find("TEMPLATE")
    assert t.findtext("CPU") == "1" and t.findtext("MEMORY") == "128"
    assert t.findtext("DISK/IMAGE_ID") == "3"
    assert t.findtext("DESCRIPTION") == "<b>"
    assert t.find("NAME") is None
    # extended / decrypt flags are accepted.
    assert raw(oned, "one.template.info", tid, True, False)[0] is True
    # pyone binds it.
    assert one.template.info(tid).NAME == "web"

    msg, code = error_of(oned, "one.template.allocate", 'NAME="web"\nCPU="1"')
    assert code == ALLOCATE
    assert msg == f"[one.template.allocate] Error allocating a new virtual machine template. NAME is already taken by TEMPLATE {tid}."
    msg, code = error_of(oned, "one.template.allocate", 'CPU="1"')
    assert code == ALLOCATE and msg.endswith("Invalid NAME, it cannot be empty")
    with pytest.raises(pyone.OneApiException, match="Error parsing template"):
        one.template.allocate('NAME="x"\nDISK=[ IMAGE_ID=1')
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting virtual machine template \[77\]"):
        one.template.info(77)

    alice = make_user("alice", "pw")
    mine = alice.template.allocate('NAME="web"\nMEMORY="64"')
    assert [e.findtext("ID") for e in tpool(oned, session=alice.session).findall("VMTEMPLATE")] == [str(mine)]
    assert len(tpool(oned).findall("VMTEMPLATE")) == 2
    with pytest.raises(pyone.OneAuthorizationException, match=rf"USE TEMPLATE \[{tid}\]"):
        alice.template.info(tid)
    # pyone template pool
    assert len(one.templatepool.info(-2, -1, -1).VMTEMPLATE) == 2


def test_template_common_methods(oned, one, make_user):
    tid = one.template.allocate('NAME="t"\nCPU="1"\nMEMORY="128"')
    one.template.update(tid, 'MEMORY="256"\nLABEL="x"', 1)
    t = tmpl(oned, tid).find("TEMPLATE")
    assert t.findtext("MEMORY") == "256" and t.findtext("CPU") == "1" and t.findtext("LABEL") == "x"
    one.template.update(tid, 'MEMORY="64"', 0)
    t = tmpl(oned, tid).find("TEMPLATE")
    assert t.findtext("MEMORY") == "64" and t.find("CPU") is None
    one.template.rename(tid, "t2")
    assert tmpl(oned, tid).findtext("NAME") == "t2"
    one.template.allocate('NAME="t3"')
    with pytest.raises(pyone.OneActionException, match="NAME is already taken by TEMPLATE"):
        one.template.rename(tid, "t3")
    one.template.chmod(tid, 1, 1, 0, 1, 0, 0, 1, 0, 0)
    assert tmpl(oned, tid).findtext("PERMISSIONS/OTHER_U") == "1"
    alice = make_user("alice", "pw")
    one.template.chown(tid, alice.uid, -1)
    assert tmpl(oned, tid).findtext("UNAME") == "alice"
    one.template.lock(tid, 3)
    assert tmpl(oned, tid).findtext("LOCK/LOCKED") == "3"
    one.template.unlock(tid)
    with pytest.raises(pyone.OneNoExistsException):
        one.template.rename(99, "x")
    with pytest.raises(pyone.OneNoExistsException):
        one.template.delete(99)
    assert one.template.delete(tid) == tid
    with pytest.raises(pyone.OneNoExistsException):
        one.template.info(tid)


def test_template_clone(oned, one, make_user, http):
    base = datablock(one, "base")
    tid = one.template.allocate(f'NAME="t"\nMEMORY="64"\nDISK=[IMAGE_ID="{base}"]\nDISK=[TYPE="swap", SIZE="10"]')
    c = one.template.clone(tid, "t-copy")
    cr = tmpl(oned, c)
    assert cr.findtext("NAME") == "t-copy"
    assert cr.findtext("TEMPLATE/DISK/IMAGE_ID") == str(base)
    assert cr.findtext("TEMPLATE/MEMORY") == "64"
    msg, code = error_of(oned, "one.template.clone", tid, "t-copy")
    assert code == ALLOCATE and "NAME is already taken by TEMPLATE" in msg
    with pytest.raises(pyone.OneNoExistsException):
        one.template.clone(999, "x")

    # Recursive: the image is cloned (LOCKED, copy pending) and the DISK points at the copy.
    rc = one.template.clone(tid, "deep", True)
    disks = tmpl(oned, rc).findall("TEMPLATE/DISK")
    new_img = int(disks[0].findtext("IMAGE_ID"))
    assert new_img != base
    assert disks[1].findtext("TYPE") == "swap"
    ni = image(oned, new_img)
    assert ni.findtext("NAME") == "deep-disk-0"
    ni = wait_image(oned, new_img)
    assert state(oned, base) == READY

    # By name, with IMAGE_UNAME: resolved, then replaced by IMAGE_ID.
    alice = make_user("alice", "pw")
    one.image.chmod(base, 1, 1, 0, 0, 0, 0, 1, 0, 0)
    named = one.template.allocate('NAME="named"\nDISK=[IMAGE="base", IMAGE_UNAME="oneadmin"]')
    one.template.chmod(named, 1, 1, 0, 0, 0, 0, 1, 0, 0)
    ac = alice.template.clone(named, "alice-copy", True)
    d = tmpl(oned, ac, session=alice.session).find("TEMPLATE/DISK")
    assert d.find("IMAGE") is None and d.find("IMAGE_UNAME") is None
    ai = image(oned, int(d.findtext("IMAGE_ID")), session=alice.session)
    assert ai.findtext("UNAME") == "alice" and ai.findtext("NAME") == "alice-copy-disk-0"

    # A failing image clone fails the whole call and leaves nothing behind.
    before_t = len(tpool(oned).findall("VMTEMPLATE"))
    before_i = len(ipool(oned).findall("IMAGE"))
    locked = locked_image(one, http, "stuck")
    before_i += 1
    bad = one.template.allocate(f'NAME="bad"\nDISK=[IMAGE_ID="{locked}"]')  # a LOCKED image
    with pytest.raises(pyone.OneActionException, match="Failed to clone images: .*Cannot clone image in state: LOCKED"):
        one.template.clone(bad, "bad-copy", True)
    assert len(tpool(oned).findall("VMTEMPLATE")) == before_t + 1
    assert len(ipool(oned).findall("IMAGE")) == before_i

    # Another user's private template.
    private = one.template.allocate('NAME="private"')
    with pytest.raises(pyone.OneAuthorizationException):
        alice.template.clone(private, "mine")


def test_template_delete_recursive(oned, one, http):
    a = datablock(one, "a")
    b = locked_image(one, http, "b")  # LOCKED: kept
    tid = one.template.allocate(f'NAME="t"\nDISK=[IMAGE_ID="{a}"]\nDISK=[IMAGE="b"]\nDISK=[TYPE="fs", SIZE="1"]')
    plain = one.template.allocate(f'NAME="plain"\nDISK=[IMAGE_ID="{a}"]')
    assert one.template.delete(plain) == plain
    assert state(oned, a) == READY
    assert one.template.delete(tid, True) == tid
    with pytest.raises(pyone.OneNoExistsException):
        one.image.info(a)
    assert state(oned, b) == LOCKED_ST
    assert a not in ds_images(oned, IMAGE_DS)


def test_template_chmod_recursive(oned, one, make_user):
    alice = make_user("alice", "pw")
    mine = datablock(one, "mine")
    theirs = datablock(alice, "theirs")
    alice.image.chmod(theirs, 1, 1, 0, 0, 0, 0, 1, 0, 0)  # others may USE, not MANAGE
    tid = one.template.allocate(f'NAME="t"\nDISK=[IMAGE_ID="{mine}"]')
    one.template.chmod(tid, 1, 1, 0, 1, 0, 0, 0, 0, 0, True)
    assert tmpl(oned, tid).findtext("PERMISSIONS/GROUP_U") == "1"
    assert image(oned, mine).findtext("PERMISSIONS/GROUP_U") == "1"

    # alice's template pointing at oneadmin's image: the image part fails, the template changes.
    one.image.chmod(mine, 1, 1, 0, 1, 0, 0, 1, 0, 0)
    at = alice.template.allocate(f'NAME="at"\nDISK=[IMAGE_ID="{mine}"]\nDISK=[IMAGE_ID="{theirs}"]')
    with pytest.raises(pyone.OneActionException, match=rf"Cannot chmod image: {mine}$"):
        alice.template.chmod(at, 1, 1, 0, 0, 0, 0, 1, 1, 0, True)
    assert tmpl(oned, at, session=alice.session).findtext("PERMISSIONS/OTHER_M") == "1"
    assert image(oned, theirs).findtext("PERMISSIONS/OTHER_M") == "1"
    assert image(oned, mine).findtext("PERMISSIONS/OTHER_M") == "0"
    with pytest.raises(pyone.OneApiException):
        one.template.chmod(tid, 2, 1, 0, 1, 0, 0, 0, 0, 0)


# ---------------------------------------------------------------------------------------
# instantiate and the VM disk contract


def test_instantiate_refusals(oned, one, make_user):
    tid = one.template.allocate('NAME="t"\nCPU="0.1"\nMEMORY="32"')
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting virtual machine template \[404\]"):
        one.template.instantiate(404, "", False, "", False)
    with pytest.raises(pyone.OneActionException, match="Persistent instantiation needs image cloning"):
        one.template.instantiate(tid, "p", False, "", True)
    vr = one.template.allocate('NAME="vr"\nVROUTER="YES"\nMEMORY="32"')
    with pytest.raises(pyone.OneActionException, match="Virtual router templates cannot be instantiated"):
        one.template.instantiate(vr, "", False, "", False)
    alice = make_user("alice", "pw")
    with pytest.raises(pyone.OneAuthorizationException, match=rf"USE TEMPLATE \[{tid}\]"):
        alice.template.instantiate(tid, "", False, "", False)
    one.template.lock(tid, 1)
    msg, code = error_of(oned, "one.template.instantiate", tid, "", False, "", False)
    assert code == LOCKED
    one.template.unlock(tid)
    with pytest.raises(pyone.OneApiException, match="Error parsing template"):
        one.template.instantiate(tid, "", False, "CPU = [", False)


def test_instantiate_uses_images(oned, one, make_user):
    if not vm_supported(oned):
        pytest.skip("one.vm.allocate is not implemented yet")
    img = datablock(one, "disk", 16)
    pers = one.image.allocate('NAME="pers"\nTYPE="DATABLOCK"\nSIZE="4"\nPERSISTENT="YES"', IMAGE_DS)
    wait_image(oned, pers)
    tid = one.template.allocate(
        f'NAME="web"\nCPU="0.1"\nMEMORY="32"\nDISK=[IMAGE_ID="{img}"]\nDISK=[IMAGE="pers"]')
    vid = one.template.instantiate(tid, "", True, 'MEMORY="64"', False)
    vm = parse_xml(oned.admin_xml("one.vm.info", vid))
    xsd_check(oned.admin_xml("one.vm.info", vid))
    assert vm.findtext("NAME") == f"web-{vid}"
    assert vm.findtext("TEMPLATE/TEMPLATE_ID") == str(tid)
    assert vm.findtext("TEMPLATE/MEMORY") == "64"
    disks = vm.findall("TEMPLATE/DISK")
    d0 = {e.tag: e.text for e in disks[0]}
    assert d0["IMAGE_ID"] == str(img) and d0["IMAGE"] == "disk"
    assert d0["DISK_ID"] == "0" and d0["CLONE"] == "YES" and d0["SAVE"] == "NO"
    assert d0["DATASTORE_ID"] == str(IMAGE_DS) and d0["DATASTORE"] == "default"
    assert d0["SIZE"] == "16" and d0["ORIGINAL_SIZE"] == "16"
    assert d0["TYPE"] == "FILE" and d0["IMAGE_UNAME"] == "oneadmin"
    assert d0["SOURCE"] == image(oned, img).findtext("SOURCE")
    assert d0.get("TM_MAD") and d0.get("DEV_PREFIX")
    d1 = {e.tag: e.text for e in disks[1]}
    assert d1["IMAGE_ID"] == str(pers) and d1["PERSISTENT"] == "YES" and d1["CLONE"] == "NO"

    ir = image(oned, img)
    assert ir.findtext("STATE") == str(USED) and ir.findtext("RUNNING_VMS") == "1"
    assert [e.text for e in ir.findall("VMS/ID")] == [str(vid)]
    assert state(oned, pers) == USED_PERS

    # In use: no delete, no persistence change, no disable.
    with pytest.raises(pyone.OneActionException, match="There are 1 VMs using it."):
        one.image.delete(img)
    with pytest.raises(pyone.OneInternalException, match="Image cannot be in state USED"):
        one.image.persistent(img, True)
    with pytest.raises(pyone.OneInternalException, match="Image cannot be in state USED_PERS"):
        one.image.enable(pers, False)

    # A persistent image serves one VM only; a non-persistent one many.
    msg, code = error_of(oned, "one.template.instantiate", tid, "second", True, "", False)
    assert code == ALLOCATE and f"Cannot acquire image {pers}, it is persistent and already in use" in msg
    assert image(oned, img).findtext("RUNNING_VMS") == "1", "a failed allocation keeps no image"
    named = one.template.instantiate(tid, "named", True, f'DISK=[IMAGE_ID="{img}"]', False)
    assert parse_xml(oned.admin_xml("one.vm.info", named)).findtext("NAME") == "named"
    assert image(oned, img).findtext("RUNNING_VMS") == "2"

    # Disabled and unusable images.
    off = datablock(one, "off")
    one.image.enable(off, False)
    t2 = one.template.allocate(f'NAME="t2"\nCPU="0.1"\nMEMORY="32"\nDISK=[IMAGE_ID="{off}"]')
    msg, code = error_of(oned, "one.template.instantiate", t2, "", True, "", False)
    assert f"Cannot acquire image {off}, it is in state: DISABLED" in msg
    t3 = one.template.allocate('NAME="t3"\nCPU="0.1"\nMEMORY="32"\nDISK=[IMAGE_ID="999"]')
    msg, code = error_of(oned, "one.template.instantiate", t3, "", True, "", False)
    assert "Image with ID: 999 does not exist" in msg
    t4 = one.template.allocate('NAME="t4"\nCPU="0.1"\nMEMORY="32"\nDISK=[IMAGE="nope"]')
    msg, code = error_of(oned, "one.template.instantiate", t4, "", True, "", False)
    assert "does not own an image with name: nope" in msg

    # Another user's private image.
    alice = make_user("alice", "pw")
    one.template.chmod(tid, 1, 1, 0, 0, 0, 0, 1, 0, 0)
    with pytest.raises(pyone.OneAuthorizationException, match=rf"USE IMAGE \[{img}\]"):
        alice.template.instantiate(tid, "", True, "", False)

    # Terminating the VMs gives the images back.
    for v in (vid, named):
        one.vm.action("terminate-hard", v)
    assert state(oned, img) == READY and image(oned, img).findtext("RUNNING_VMS") == "0"
    assert state(oned, pers) == READY
    one.image.delete(img)


def test_images_and_templates_survive_restart(oned, one):
    iid = datablock(one, "keep", 3, 'LABEL="x"')
    c = one.image.clone(iid, "keep-copy")
    wait_image(oned, c)
    tid = one.template.allocate(f'NAME="t"\nMEMORY="32"\nDISK=[IMAGE_ID="{iid}"]')
    one.image.lock(iid, 2)
    before = [image_xml(oned, i) for i in (iid, c)] + [oned.admin_xml("one.template.info", tid)]
    oned.restart()
    after = [image_xml(oned, i) for i in (iid, c)] + [oned.admin_xml("one.template.info", tid)]
    assert after == before
    # Ids keep counting after a restart.
    assert datablock(oned.client(), "next") == c + 1


def ds_quota(oned, uid, ds_id=IMAGE_DS):
    """(IMAGES_USED, SIZE_USED) of a user's DATASTORE quota entry, (0, 0) when absent."""
    root = parse_xml(oned.admin_xml("one.user.info", uid))
    for d in root.findall("DATASTORE_QUOTA/DATASTORE"):
        if d.findtext("ID") == str(ds_id):
            return int(float(d.findtext("IMAGES_USED"))), int(float(d.findtext("SIZE_USED")))
    return 0, 0


def test_datastore_quota(oned, one, make_user):
    alice = make_user("alice", "pw")
    bob = make_user("bob", "pw")
    a = datablock(alice, "q1", 30)
    assert ds_quota(oned, alice.uid) == (1, 30)
    c = alice.image.clone(a, "q1-copy")
    assert ds_quota(oned, alice.uid) == (2, 60)
    one.image.delete(c, True)
    assert ds_quota(oned, alice.uid) == (1, 30)

    # chown moves the usage to the new owner.
    one.image.chown(a, bob.uid, -1)
    assert ds_quota(oned, alice.uid) == (0, 0)
    assert ds_quota(oned, bob.uid) == (1, 30)
    one.image.delete(a)
    assert ds_quota(oned, bob.uid) == (0, 0)

    # A limit refuses the allocation and charges nothing.
    one.user.quota(alice.uid, f'DATASTORE=[ID="{IMAGE_DS}", IMAGES="-2", SIZE="50"]')
    datablock(alice, "fits", 40)
    with pytest.raises(pyone.OneAuthorizationException, match="SIZE"):
        datablock(alice, "too-big", 20)
    assert ds_quota(oned, alice.uid) == (1, 40)
