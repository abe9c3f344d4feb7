"""Datastores (docs/storage.md): IMAGE_DS, SYSTEM_DS and FILE_DS with DS_MAD fs and TM_MAD
shared, qcow2 and local (alias ssh); the configurable datastores root where new datastores
live as directories named by id, made by the frontend agent with the token file of a shared
one; capacity measured once by the frontend agent; bootstrap datastores 0/1/2.

Nothing here depends on the database: the SQLite stage runs it (conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pyone
import pytest

from harness import Oned, oned_binary, parse_xml, wait_for, xsd_check
from storage_util import wait_frontend

pytestmark = pytest.mark.db_independent


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("dsroot")
    root = base / "datastores-root"
    cfg = base / "oned.toml"
    cfg.write_text(f'[storage]\ndatastores_root = "{root}"\n[monitoring]\ndummy_interval_seconds = 0.5\n')
    o = Oned(base / "one", extra_args=["--config", str(cfg)], binary=oned_binary())
    o.start()
    o.root = root
    wait_frontend(o)
    yield o
    o.stop()
    print(f"\n===== {o!r}\n{o.logs(tail=40)}")


def ds(o, i):
    xml = o.admin_xml("one.datastore.info", i)
    xsd_check(xml)
    return parse_xml(xml)


def cloud_id(o) -> str:
    return (o.data_dir / "cloud_id").read_text().strip()


def test_bootstrap_datastores_live_under_the_root_with_tokens(cloud):
    for i, ty in ((0, "1"), (1, "0"), (2, "2")):
        d = ds(cloud, i)
        assert d.findtext("BASE_PATH") == str(cloud.root / str(i))
        assert d.findtext("TYPE") == ty and d.findtext("TM_MAD") == "shared"
        token = (cloud.root / str(i) / ".one-rs-datastore").read_text().strip()
        assert token == f"one-rs datastore {i} cloud {cloud_id(cloud)}"
    # Capacity: measured by the frontend agent (df of the directory).
    wait_for("capacity", lambda: int(ds(cloud, 1).findtext("TOTAL_MB")) > 0)
    d = ds(cloud, 1)
    assert 0 < int(d.findtext("FREE_MB")) <= int(d.findtext("TOTAL_MB"))


def test_allocate_with_the_served_drivers(cloud):
    one = cloud.client()
    made = {}
    for name, tmpl, shared in (
        ("sys-shared", 'TYPE="SYSTEM_DS"\nTM_MAD="shared"', True),
        ("sys-qcow2", 'TYPE="SYSTEM_DS"\nTM_MAD="qcow2"', True),
        ("sys-local", 'TYPE="SYSTEM_DS"\nTM_MAD="local"', False),
        ("sys-ssh", 'TYPE="SYSTEM_DS"\nTM_MAD="ssh"', False),
        ("img", 'TYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="qcow2"', True),
        ("files2", 'TYPE="FILE_DS"\nDS_MAD="fs"\nTM_MAD="shared"', True),
    ):
        i = one.datastore.allocate(f'NAME="{name}"\n{tmpl}', -1)
        made[name] = (i, shared)
        d = ds(cloud, i)
        assert i >= 100
        assert d.findtext("BASE_PATH") == str(cloud.root / str(i))
        assert d.findtext("TEMPLATE/SHARED") == ("YES" if shared else "NO")
        assert d.findtext("TEMPLATE/LN_TARGET") == ("NONE" if shared else "SYSTEM")
    for name, (i, shared) in made.items():
        wait_for(f"{name}'s directory", lambda: (cloud.root / str(i)).is_dir())
        token = cloud.root / str(i) / ".one-rs-datastore"
        if shared:
            wait_for(f"{name}'s token", token.is_file)
        else:
            assert not token.exists(), "a host-local datastore has no token"
    # Measured by the frontend: image, file and shared system datastores; a local system
    # datastore is each host's disk (its hosts report it).
    wait_for("capacity", lambda: int(ds(cloud, made["img"][0]).findtext("TOTAL_MB")) > 0)
    assert int(ds(cloud, made["sys-local"][0]).findtext("TOTAL_MB")) == 0

    # What is not served is refused, saying what is.
    with pytest.raises(pyone.OneException, match="TM_MAD ceph is not supported"):
        one.datastore.allocate('NAME="c"\nTYPE="SYSTEM_DS"\nTM_MAD="ceph"', -1)
    with pytest.raises(pyone.OneException, match="DS_MAD lvm is not supported: use fs"):
        one.datastore.allocate('NAME="l"\nTYPE="IMAGE_DS"\nDS_MAD="lvm"\nTM_MAD="shared"', -1)
    # A BASE_PATH of its own is kept (and made).
    custom = cloud.root.parent / "elsewhere" / "ds"
    i = one.datastore.allocate(f'NAME="custom"\nDS_MAD="fs"\nTM_MAD="shared"\nBASE_PATH="{custom}"', -1)
    assert ds(cloud, i).findtext("BASE_PATH") == str(custom)
    wait_for("custom directory", lambda: (custom / ".one-rs-datastore").is_file())
    # A datastore holding images cannot go; an empty one can (its directory stays).
    img_id = one.image.allocate('NAME="x"\nTYPE="DATABLOCK"\nSIZE="1"', made["img"][0])
    with pytest.raises(pyone.OneActionException, match="holds 1 image"):
        one.datastore.delete(made["img"][0])
    wait_for("image ready", lambda: one.image.info(img_id).STATE == 1)
    one.image.delete(img_id)
    one.datastore.delete(made["files2"][0])
    assert Path(cloud.root / str(made["files2"][0])).is_dir()
