"""Images on the frontend agent (docs/storage.md): registration from a path (raw, qcow2 with
snapshots), an http(s) URL served by the test, and an upload (POST/PUT /upload); empty
datablocks with a file system; clones; image snapshots and resize; path rules; quotas; and
the faults: a redirect to another scheme, a stalled URL, a full datastore (a small tmpfs),
a frontend agent or an oned killed during a copy. Real qemu-img, real files.

What these check does not depend on the database: the SQLite stage runs it (conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyone
import pytest

from harness import Oned, agent_children, oned_binary, parse_xml, wait_for, xsd_check
from storage_util import (
    ERROR, FILE_DS, IMAGE_DS, READY, USED, HttpServer, image_doc, image_state, qemu_img,
    wait_frontend, wait_image,
)

pytestmark = pytest.mark.db_independent

ALLOCATE = 0x2000
ACTION = 0x0800

CONFIG = """
[storage]
url_stall_timeout_seconds = 2
upload_token_seconds = 30
upload_max_bytes = 67108864
[hosts]
reconnect_initial_seconds = 0.2
reconnect_max_seconds = 1.0
"""


@pytest.fixture(autouse=True)
def _needs_qemu_img():
    if not shutil.which("qemu-img"):
        print("SKIP: qemu-img is not installed (scripts/install-deps.sh)")
        pytest.skip("qemu-img is not installed (scripts/install-deps.sh)")


def start_oned(base: Path, name="one", config=CONFIG) -> Oned:
    base.mkdir(parents=True, exist_ok=True)
    cfg = base / f"{name}.toml"
    cfg.write_text(config)
    o = Oned(base / name, extra_args=["--config", str(cfg)], binary=oned_binary())
    o.start()
    wait_frontend(o)
    return o


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    o = start_oned(tmp_path_factory.mktemp("storage"))
    yield o
    o.stop()
    print(f"\n===== {o!r}\n{o.logs(tail=60)}")


@pytest.fixture(scope="module")
def http():
    s = HttpServer()
    yield s
    s.stop()


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def ds_dir(o: Oned, ds=IMAGE_DS) -> Path:
    return Path(parse_xml(o.admin_xml("one.datastore.info", ds)).findtext("BASE_PATH"))


def listing(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def error_of(o: Oned, method, *params, session=None):
    r = o.raw_call(method, session or o.session, *params)
    assert r[0] is False, f"{method}{params!r} should fail: {r!r}"
    return r[1], r[2]


def upload(o: Oned, path: Path, session: str, method="PUT") -> tuple[int, dict | str]:
    url = o.endpoint.replace("/RPC2", "/upload")
    data = path.read_bytes()
    auth = base64.b64encode(session.encode()).decode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Basic {auth}",
                                          "Content-Length": str(len(data))})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ds_quota(o: Oned, uid: int, ds=IMAGE_DS) -> tuple[int, int]:
    root = parse_xml(o.admin_xml("one.user.info", uid))
    for d in root.findall("DATASTORE_QUOTA/DATASTORE"):
        if d.findtext("ID") == str(ds):
            return int(float(d.findtext("IMAGES_USED"))), int(float(d.findtext("SIZE_USED")))
    return 0, 0


# ---------------------------------------------------------------------------------------
# Registration


def test_register_raw_and_qcow2_from_paths(cloud, tmp_path):
    one = cloud.client()
    raw = tmp_path / "disk.raw"
    raw.write_bytes(os.urandom(3 << 20))
    q = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(q), "64M")
    qemu_img("snapshot", "-c", "before", str(q))
    qemu_img("snapshot", "-c", "after", str(q))
    sums = (sha(raw), sha(q))
    d = ds_dir(cloud)
    before = listing(d)

    r = one.image.allocate(f'NAME="raw"\nPATH="{raw}"\nTYPE="DATABLOCK"', IMAGE_DS)
    doc = wait_image(cloud, r)
    assert doc.findtext("FORMAT") == "raw" and doc.findtext("SIZE") == "3"
    assert sha(doc.findtext("SOURCE")) == sums[0]
    xsd_check(cloud.admin_xml("one.image.info", r))

    i = one.image.allocate(f'NAME="qc"\nPATH="{q}"', IMAGE_DS)
    doc = wait_image(cloud, i)
    # FORMAT and SIZE are qemu-img's: the virtual size, not the file's.
    assert doc.findtext("FORMAT") == "qcow2" and doc.findtext("SIZE") == "64"
    snaps = doc.findall("SNAPSHOTS/SNAPSHOT")
    assert [(s.findtext("ID"), s.findtext("NAME")) for s in snaps] == [("0", "before"), ("1", "after")]
    xsd_check(cloud.admin_xml("one.image.info", i))
    # The origins are untouched; the datastore got the two image files and nothing else.
    assert (sha(raw), sha(q)) == sums
    added = listing(d) - before
    assert added == {Path(image_doc(cloud, x).findtext("SOURCE")).name for x in (r, i)}, added

    # The image snapshots: revert, delete, flatten (LOCKED while the agent works).
    one.image.snapshotrevert(i, 0)
    doc = wait_image(cloud, i)
    assert [s.findtext("ACTIVE") for s in doc.findall("SNAPSHOTS/SNAPSHOT")] == ["YES", None]
    one.image.snapshotdelete(i, 1)
    doc = wait_image(cloud, i)
    assert [s.findtext("NAME") for s in doc.findall("SNAPSHOTS/SNAPSHOT")] == ["before"]
    assert "after" not in qemu_img("snapshot", "-l", doc.findtext("SOURCE"))
    one.image.snapshotflatten(i, 0)
    doc = wait_image(cloud, i)
    assert doc.find("SNAPSHOTS/SNAPSHOT") is None
    assert "before" not in qemu_img("snapshot", "-l", doc.findtext("SOURCE"))
    with pytest.raises(pyone.OneActionException, match="Snapshot does not exist"):
        one.image.snapshotrevert(i, 0)

    # Resize (our extension): grows the file, never shrinks.
    assert cloud.admin_call("one.image.resize", i, 96)[0] is True
    doc = wait_image(cloud, i)
    assert doc.findtext("SIZE") == "96"
    assert json.loads(qemu_img("info", "--output=json", doc.findtext("SOURCE")))["virtual-size"] == 96 << 20
    msg, code = error_of(cloud, "one.image.resize", i, 10)
    assert code == ACTION and "cannot shrink" in msg

    # Clone: a copy of the file, READY.
    c = one.image.clone(r, "raw-copy")
    doc = wait_image(cloud, c)
    assert sha(doc.findtext("SOURCE")) == sums[0]
    # Delete: the record and the file go.
    src = Path(doc.findtext("SOURCE"))
    one.image.delete(c)
    wait_for("the clone's file removed", lambda: not src.exists())


def test_register_from_urls_and_uploads(cloud, http, tmp_path, ):
    one = cloud.client()
    data = os.urandom(2 << 20)
    http.files["img"] = data
    i = one.image.allocate(f'NAME="web"\nPATH="{http.url}/f/img"\nTYPE="DATABLOCK"', IMAGE_DS)
    doc = wait_image(cloud, i)
    assert Path(doc.findtext("SOURCE")).read_bytes() == data and doc.findtext("SIZE") == "2"
    # Without a Content-Length too.
    j = one.image.allocate(f'NAME="web2"\nPATH="{http.url}/nolength/img"\nTYPE="DATABLOCK"', IMAGE_DS)
    assert Path(wait_image(cloud, j).findtext("SOURCE")).read_bytes() == data

    # An upload, by a user outside oneadmin, usable once and by that user only.
    alice = cloud.create_user("alice-up", "pw")
    bob = cloud.create_user("bob-up", "pw")
    f = tmp_path / "upload.bin"
    f.write_bytes(os.urandom(5 << 20))
    code, ans = upload(cloud, f, alice.session)
    assert code == 201, ans
    assert ans["path"] == f"upload://{ans['token']}" and ans["size"] == 5 << 20
    msg, code = error_of(cloud, "one.image.allocate", f'NAME="stolen"\nPATH="{ans["path"]}"', IMAGE_DS,
                         session=bob.session)
    assert code == ALLOCATE and "belongs to another user" in msg, msg
    k = alice.image.allocate(f'NAME="mine"\nPATH="{ans["path"]}"\nTYPE="DATABLOCK"', IMAGE_DS)
    doc = wait_image(cloud, k)
    assert sha(doc.findtext("SOURCE")) == sha(f) and doc.findtext("UNAME") == "alice-up"
    msg, code = error_of(cloud, "one.image.allocate", f'NAME="again"\nPATH="{ans["path"]}"', IMAGE_DS,
                         session=alice.session)
    assert "was used already or has expired" in msg
    # The staging area keeps nothing once the image is registered.
    assert not any((cloud.data_dir / "upload").iterdir())
    # Bad credentials (the body is not read: a small one); a POST works as well as a PUT.
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"x")
    assert upload(cloud, tiny, "alice-up:wrong")[0] == 401
    code, ans = upload(cloud, f, alice.session, method="POST")
    assert code == 201
    # Quota: each registration charged the uploader (1 image, 5 MB).
    assert ds_quota(cloud, alice.uid) == (1, 5)


def test_empty_datablocks_and_files(cloud, tmp_path):
    one = cloud.client()
    e = one.image.allocate('NAME="fs"\nTYPE="DATABLOCK"\nSIZE="32"\nFS="ext4"', IMAGE_DS)
    doc = wait_image(cloud, e)
    assert doc.findtext("FS") == "ext4" and doc.findtext("FORMAT") == "raw"
    if shutil.which("blkid"):
        out = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", doc.findtext("SOURCE")],
                             capture_output=True, text=True).stdout.strip()
        assert out == "ext4"
    q = one.image.allocate('NAME="fsq"\nTYPE="DATABLOCK"\nSIZE="16"\nFORMAT="qcow2"\nFS="ext4"', IMAGE_DS)
    assert wait_image(cloud, q).findtext("FORMAT") == "qcow2"
    with pytest.raises(pyone.OneInternalException, match="FS \"ntfs3000\" is not supported"):
        one.image.allocate('NAME="bad"\nTYPE="DATABLOCK"\nSIZE="1"\nFS="ntfs3000"', IMAGE_DS)
    # KERNEL / RAMDISK / CONTEXT in the files datastore, taken as they are.
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"\x7fELF" + os.urandom(1000))
    for t in ("KERNEL", "RAMDISK", "CONTEXT"):
        i = one.image.allocate(f'NAME="{t.lower()}"\nTYPE="{t}"\nPATH="{k}"', FILE_DS)
        doc = wait_image(cloud, i)
        assert sha(doc.findtext("SOURCE")) == sha(k)
        assert Path(doc.findtext("SOURCE")).parent == ds_dir(cloud, FILE_DS)


# ---------------------------------------------------------------------------------------
# Bad input


def test_path_rules(cloud, tmp_path):
    one = cloud.client()
    f = tmp_path / "ok.img"
    f.write_bytes(b"\0" * 4096)
    carol = cloud.create_user("carol", "pw")
    # Users outside oneadmin: only from the datastore's SAFE_DIRS (or a URL or an upload).
    msg, code = error_of(cloud, "one.image.allocate", f'NAME="c1"\nPATH="{f}"', IMAGE_DS, session=carol.session)
    assert code == ALLOCATE and "SAFE_DIRS" in msg, msg
    one.datastore.update(IMAGE_DS, f'SAFE_DIRS="{tmp_path}"', 1)
    i = carol.image.allocate(f'NAME="c1"\nPATH="{f}"', IMAGE_DS)
    wait_image(cloud, i)
    # RESTRICTED_DIRS (default /etc) are refused, unless also under SAFE_DIRS.
    msg, code = error_of(cloud, "one.image.allocate", 'NAME="pw"\nPATH="/etc/passwd"', IMAGE_DS)
    assert code == ALLOCATE and "RESTRICTED_DIRS" in msg, msg
    one.datastore.update(IMAGE_DS, f'SAFE_DIRS="{tmp_path} /etc"', 1)
    p = one.image.allocate('NAME="pw"\nPATH="/etc/passwd"', IMAGE_DS)
    wait_image(cloud, p)
    # oned's data directory and keys: never, SAFE_DIRS="/" or a link leading there.
    one.datastore.update(IMAGE_DS, 'SAFE_DIRS="/"', 1)
    link = tmp_path / "innocent.img"
    link.symlink_to(cloud.data_dir / "ssh" / "id_ed25519")
    for path in (cloud.data_dir / "one_auth", cloud.data_dir / "ssh" / "id_ed25519", link,
                 cloud.data_dir / "one.db"):
        msg, code = error_of(cloud, "one.image.allocate", f'NAME="x"\nPATH="{path}"', IMAGE_DS)
        assert code == ALLOCATE and "Not allowed to copy images from" in msg, (path, msg)
    one.datastore.update(IMAGE_DS, 'SAFE_DIRS=""', 1)
    # Other schemes; a directory.
    with pytest.raises(pyone.OneInternalException, match="only local paths, http"):
        one.image.allocate('NAME="x"\nPATH="ftp://example.org/x.img"', IMAGE_DS)
    with pytest.raises(pyone.OneInternalException, match="not a regular file"):
        one.image.allocate(f'NAME="x"\nPATH="{tmp_path}"', IMAGE_DS)


def test_bad_images_end_in_error_with_the_reason(cloud, http, tmp_path):
    one = cloud.client()
    d = ds_dir(cloud)
    # A qcow2 whose backing file is outside the datastore.
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(top))
    sums = sha(top)
    before = listing(d)
    i = one.image.allocate(f'NAME="backed"\nPATH="{top}"', IMAGE_DS)
    doc = wait_image(cloud, i, ERROR)
    assert "backing file outside its datastore" in doc.findtext("TEMPLATE/ERROR")
    assert sha(top) == sums
    # A redirect to another scheme.
    j = one.image.allocate(f'NAME="redir"\nPATH="{http.url}/redirect?to=file:///etc/passwd"', IMAGE_DS)
    doc = wait_image(cloud, j, ERROR)
    assert "only http and https" in doc.findtext("TEMPLATE/ERROR")
    # A URL that stalls (storage.url_stall_timeout_seconds = 2).
    k = one.image.allocate(f'NAME="stall"\nPATH="{http.url}/stall/100000"', IMAGE_DS)
    doc = wait_image(cloud, k, ERROR, timeout=30)
    assert "stalled" in doc.findtext("TEMPLATE/ERROR"), doc.findtext("TEMPLATE/ERROR")
    # Nothing left in the datastore by any of them.
    assert listing(d) == before
    # An image in ERROR keeps its quota charge until it is deleted (oneadmin is never
    # charged: a user's image shows it).
    dave = cloud.create_user("dave", "pw")
    x = dave.image.allocate(f'NAME="stall"\nPATH="{http.url}/stall/10"\nSIZE="7"', IMAGE_DS)
    wait_image(cloud, x, ERROR, timeout=30)
    charged = ds_quota(cloud, dave.uid)
    assert charged[0] == 1, charged
    dave.image.delete(x)
    assert ds_quota(cloud, dave.uid) == (0, 0)
    # ERROR → READY needs the administrator's enable; delete works in ERROR.
    for n in (i, j, k):
        one.image.delete(n)


def test_no_space_and_limit_mb(cloud, http, tmp_path):
    one = cloud.client()
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs datastore needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "one-rs-test", str(mnt)], check=True)
    try:
        ds = one.datastore.allocate(f'NAME="small"\nDS_MAD="fs"\nTM_MAD="shared"\nBASE_PATH="{mnt}/ds"', -1)
        wait_for("the small datastore measured",
                 lambda: int(parse_xml(cloud.admin_xml("one.datastore.info", ds)).findtext("TOTAL_MB")) > 0)
        big = tmp_path / "big.img"
        big.write_bytes(os.urandom(12 << 20))
        # Known too large: refused at registration.
        msg, code = error_of(cloud, "one.image.allocate", f'NAME="big"\nPATH="{big}"', ds)
        assert code == ACTION and "Not enough space in datastore" in msg, msg
        # A URL that does not say its size: stopped at the datastore's free space, ERROR with
        # the reason, the partial file removed.
        http.files["big"] = big.read_bytes()
        i = one.image.allocate(f'NAME="big"\nPATH="{http.url}/nolength/big"', ds)
        doc = wait_image(cloud, i, ERROR, timeout=30)
        assert "Not enough space in datastore" in doc.findtext("TEMPLATE/ERROR"), doc.findtext("TEMPLATE/ERROR")
        assert [p.name for p in (mnt / "ds").iterdir()] == [".one-rs-datastore"]
        # oneadmin may skip the capacity check: the file system itself fills up (ENOSPC).
        j = one.image.allocate(f'NAME="big2"\nPATH="{big}"', ds, True)
        doc = wait_image(cloud, j, ERROR, timeout=30)
        assert "Not enough space in datastore" in doc.findtext("TEMPLATE/ERROR"), doc.findtext("TEMPLATE/ERROR")
        assert "No space left on device" in doc.findtext("TEMPLATE/ERROR")
        assert [p.name for p in (mnt / "ds").iterdir()] == [".one-rs-datastore"]
        one.image.delete(j)
        # LIMIT_MB: what the datastore's images may use at most.
        one.datastore.update(IMAGE_DS, 'LIMIT_MB="1"', 1)
        small = tmp_path / "two.img"
        small.write_bytes(b"\0" * (2 << 20))
        msg, code = error_of(cloud, "one.image.allocate", f'NAME="two"\nPATH="{small}"', IMAGE_DS)
        assert "Not enough space in datastore" in msg
        one.datastore.update(IMAGE_DS, 'LIMIT_MB=""', 1)
        one.image.delete(i)
    finally:
        subprocess.run(["umount", str(mnt)])


def test_delete_refused_while_in_use_and_persistence(cloud):
    one = cloud.client()
    i = one.image.allocate('NAME="used"\nTYPE="DATABLOCK"\nSIZE="4"', IMAGE_DS)
    wait_image(cloud, i)
    vid = one.vm.allocate(f'NAME="user"\nCPU="0.1"\nMEMORY="16"\nDISK=[IMAGE_ID="{i}"]', True)
    assert image_state(cloud, i) == USED
    with pytest.raises(pyone.OneActionException, match="There are 1 VMs using it"):
        one.image.delete(i)
    with pytest.raises(pyone.OneInternalException, match="Image cannot be in state USED"):
        one.image.persistent(i, True)
    one.vm.action("terminate-hard", vid)
    wait_for("image released", lambda: image_state(cloud, i) == READY)
    one.image.persistent(i, True)
    one.image.enable(i, False)
    one.image.enable(i, True)
    one.image.chtype(i, "OS")
    assert image_doc(cloud, i).findtext("TYPE") == "0"
    one.image.delete(i)


# ---------------------------------------------------------------------------------------
# Killed in the middle


def test_a_killed_frontend_agent_ends_the_copy_in_error_and_its_partial_file_goes(cloud, http):
    one = cloud.client()
    d = ds_dir(cloud)
    before = listing(d)
    i = one.image.allocate(f'NAME="killed"\nPATH="{http.url}/stall/3000000"', IMAGE_DS)
    source = Path(image_doc(cloud, i).findtext("SOURCE"))
    part = source.with_name(source.name + ".part")
    wait_for("the copy to start", part.exists)
    [pid] = agent_children(cloud.pid, frontend=True)
    os.kill(pid, 9)
    doc = wait_image(cloud, i, ERROR, timeout=30)
    assert "frontend agent stopped during the operation" in doc.findtext("TEMPLATE/ERROR")
    wait_for("the partial file removed", lambda: not part.exists())
    assert listing(d) == before
    # A new agent serves the next images.
    wait_for("a new frontend agent", lambda: agent_children(cloud.pid, frontend=True) not in ([], [pid]))
    j = one.image.allocate('NAME="after"\nTYPE="DATABLOCK"\nSIZE="1"', IMAGE_DS)
    wait_image(cloud, j)
    one.image.delete(i)
    one.image.delete(j)


def test_a_killed_oned_ends_the_copy_in_error_after_its_restart(tmp_path, http):
    o = start_oned(tmp_path, "crash")
    try:
        one = o.client()
        i = one.image.allocate(f'NAME="crash"\nPATH="{http.url}/stall/3000000"', IMAGE_DS)
        source = Path(image_doc(o, i).findtext("SOURCE"))
        part = source.with_name(source.name + ".part")
        wait_for("the copy to start", part.exists)
        o.kill()
        o.start()
        wait_frontend(o)
        doc = wait_image(o, i, ERROR, timeout=30)
        assert "oned stopped during it" in doc.findtext("TEMPLATE/ERROR")
        wait_for("the partial file removed", lambda: not part.exists() and not source.exists())
    finally:
        o.stop()
