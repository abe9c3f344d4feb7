"""Order of pool listings, as OpenNebula's API_LIST_ORDER: newest first (DESC) unless
configured, paging (end < -1) counted in that order, "ASC" still configurable in oned.toml,
and a user's or group's template overriding it for its members
(OPENNEBULA=[API_LIST_ORDER=...], the user's first)."""

from __future__ import annotations

from harness import parse_xml, xsd_check

MINIMAL = 'CPU="0.1"\nMEMORY="16"\n'


def ids(xml_text: str, tag: str) -> list[int]:
    return [int(o.findtext("ID")) for o in parse_xml(xml_text).findall(tag)]


def listing(oned, method: str, tag: str, *params, session: str | None = None) -> list[int]:
    r = oned.raw_call(method, session or oned.session, *params)
    assert r[0] is True, r
    xsd_check(r[1])
    return ids(r[1], tag)


def populate(one) -> dict[str, list[int]]:
    """Three objects of several kinds, in creation (id) order."""
    made = {"VM": [], "HOST": [], "USER": [0, 1], "GROUP": [0, 1], "VMTEMPLATE": [], "VNET": []}
    for i in range(3):
        made["VM"].append(one.vm.allocate(MINIMAL))
        made["HOST"].append(one.host.allocate(f"h{i}", "dummy", "dummy", -1))
        made["USER"].append(one.user.allocate(f"u{i}", "pw", "core", []))
        made["GROUP"].append(one.group.allocate(f"g{i}"))
        made["VMTEMPLATE"].append(one.template.allocate(f'NAME="t{i}"\n' + MINIMAL))
        made["VNET"].append(one.vn.allocate(f'NAME="n{i}"\nBRIDGE="br0"\nVN_MAD="bridge"', -1))
    return made


POOLS = [
    ("one.vmpool.info", "VM", (-2, -1, -1, -1)),
    ("one.vmpool.infoextended", "VM", (-2, -1, -1, -1)),
    ("one.hostpool.info", "HOST", ()),
    ("one.userpool.info", "USER", ()),
    ("one.grouppool.info", "GROUP", ()),
    ("one.templatepool.info", "VMTEMPLATE", (-2, -1, -1)),
    ("one.vnpool.info", "VNET", (-2, -1, -1)),
]


def test_listings_are_newest_first_by_default_and_pages_count_that_way(oned, one):
    made = populate(one)
    assert one.system.config().API_LIST_ORDER == ["DESC"]  # a list in the XSD
    for method, tag, params in POOLS:
        got = listing(oned, method, tag, *params)
        assert got == sorted(made[tag], reverse=True), method
    # pyone reads them the same way: the newest VM first (OpenNebula's `onevm list` order).
    assert [v.ID for v in one.vmpool.info(-2, -1, -1, -1).VM] == made["VM"][::-1]
    # A page: offset 1, size 2, in that order; the image and template pools page alike.
    vms = made["VM"][::-1]
    assert listing(oned, "one.vmpool.info", "VM", -2, 1, -2, -1) == vms[1:3]
    assert listing(oned, "one.vmpool.info", "VM", -2, 0, -1, -1) == vms
    tpls = made["VMTEMPLATE"][::-1]
    assert listing(oned, "one.templatepool.info", "VMTEMPLATE", -2, 2, -5) == tpls[2:]


def test_asc_stays_configurable(oned_factory, tmp_path):
    cfg = tmp_path / "oned.toml"
    cfg.write_text('api_list_order = "ASC"\n')
    oned = oned_factory("asc", extra_args=["--config", str(cfg)])
    one = oned.client()
    made = populate(one)
    assert one.system.config().API_LIST_ORDER == ["ASC"]
    for method, tag, params in POOLS:
        assert listing(oned, method, tag, *params) == sorted(made[tag]), method
    assert listing(oned, "one.vmpool.info", "VM", -2, 1, -2, -1) == made["VM"][1:3]


def test_a_user_or_group_template_overrides_the_order_for_its_members(oned, one):
    vms = [one.vm.allocate(MINIMAL) for _ in range(3)]
    gid = one.group.allocate("asc-team")
    alice = oned.create_user("alice", "pw", [gid])
    bob = oned.create_user("bob", "pw", [gid])
    # Let both see every VM (the order, not the permissions, is under test).
    for v in vms:
        one.vm.chmod(v, -1, -1, -1, -1, -1, -1, 1, -1, -1)
    newest, oldest = vms[::-1], vms
    as_user = lambda u: listing(oned, "one.vmpool.info", "VM", -2, -1, -1, -1, session=u.session)  # noqa: E731
    assert as_user(alice) == newest and as_user(bob) == newest
    one.group.update(gid, 'OPENNEBULA=[API_LIST_ORDER="ASC"]', 1)
    assert as_user(alice) == oldest and as_user(bob) == oldest
    # The user's own setting wins over his group's; oneadmin keeps the configured order.
    one.user.update(bob.uid, 'OPENNEBULA=[API_LIST_ORDER="DESC"]', 1)
    assert as_user(bob) == newest and as_user(alice) == oldest
    assert listing(oned, "one.vmpool.info", "VM", -2, -1, -1, -1) == newest
    # Paging follows the caller's order.
    page = listing(oned, "one.vmpool.info", "VM", -2, 0, -2, -1, session=alice.session)
    assert page == oldest[:2]
