"""The web console in a real browser (Debian's headless chromium through chromedriver),
against a real oned, one-scheduler and dummy hosts.

One cloud and one browser for the whole module (module-scoped fixtures): a plain user logs
in, instantiates a VM from a template and watches it reach RUNNING in the list without a
reload, powers it off, resumes and terminates it; oneadmin adds a dummy host and sees it
MONITORED; another user's VM page is refused; a form posted without its CSRF token is
refused; a `<script>` in a VM's attributes shows as text; the VM page's snapshot, NIC and
disk attach / detach and resize forms reach oned; an image is uploaded with a progress bar.
Below the browser: anonymous redirects, cookie flags, slowed failed logins, idle expiry,
logout revoking the token, the weight of the pages' scripts and styles, and the command
line docs/sunstone.md shows.

Screenshots go to the scratch folder (sunstone_util.screenshot_dir()), never into the repo.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness import Oned, wait_for
from sched_harness import Scheduler
from sunstone_util import (Http, PrefixProxy, Sunstone, accept_confirm, chrome, console_errors, css, css_all,
                           login, shot, sunstone_binary, wait_until)

pytestmark = pytest.mark.db_independent

FAST = """
[monitoring]
dummy_interval_seconds = 0.3
"""

ALICE, BOB = ("alice", "alice-pw-1"), ("bob", "bob-pw-22")
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


class Cloud:
    pass


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, oned_bin):
    base = tmp_path_factory.mktemp("sunstone")
    cfg = base / "oned.toml"
    cfg.write_text(FAST)
    c = Cloud()
    c.oned = Oned(base / "one", extra_args=["--config", str(cfg)], binary=oned_bin)
    c.oned.start()
    c.sched = Scheduler(c.oned, base / "sched").start()
    c.sunstone = Sunstone(c.oned.endpoint, base / "sunstone").start()
    one = c.one = c.oned.client()
    c.host = one.host.allocate("h1", "dummy", "dummy", -1)
    c.alice = one.user.allocate(ALICE[0], ALICE[1], "", [1])
    c.bob = one.user.allocate(BOB[0], BOB[1], "", [1])
    one.user.update(c.alice, 'SSH_PUBLIC_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@laptop"', 1)
    c.vnet = one.vn.allocate('NAME="lan"\nVN_MAD="bridge"\nBRIDGE="br-ui"\n'
                             'AR=[TYPE="IP4", IP="10.9.0.10", SIZE="20"]', -1)
    one.vn.chmod(c.vnet, 1, 1, 0, 1, 0, 0, 1, 0, 0)
    c.template = one.template.allocate(
        'NAME="small"\nCPU="0.1"\nMEMORY="64"\nNIC=[NETWORK_ID="%d"]\n'
        'CONTEXT=[NETWORK="YES"]\nUSER_INPUTS=[MEMORY="M|range||32..512|64"]' % c.vnet)
    one.template.chmod(c.template, 1, 1, 0, 1, 0, 0, 1, 0, 0)
    wait_for("host h1 MONITORED", lambda: one.host.info(c.host).STATE == 2, timeout=30)
    c.url = c.sunstone.url
    yield c
    c.sunstone.stop()
    c.sched.stop()
    c.oned.stop()
    print(f"\n===== sunstone\n{c.sunstone.logs()[-4000:]}")


@pytest.fixture(scope="module")
def browser(cloud):
    d = chrome()
    yield d
    d.quit()


def as_user(driver, cloud, user, password):
    driver.delete_all_cookies()
    login(driver, cloud.url, user, password)


def click_action(driver, vid: int, action: str):
    from selenium.webdriver.common.by import By
    driver.find_element(
        By.XPATH, f"//form[@action='vms/{vid}/action'][input[@name='action' and @value='{action}']]/button"
    ).click()


def head_state(driver) -> str:
    return css(driver, "#vm-head .badge").text


# ---------------------------------------------------------------------------------------
# Below the browser


def test_anonymous_visitors_are_sent_to_the_login_form(cloud):
    h = Http(cloud.url)
    status, headers, _ = h.get("")
    assert (status, headers["Location"]) == (303, "login")
    status, headers, _ = h.get("vms/5")
    assert (status, headers["Location"]) == (303, "../login?next=vms%2F5")
    status, headers, _ = h.get("admin/hosts/1/enable")
    assert status == 303 and headers["Location"].startswith("../../../login?next=admin%2Fhosts")
    status, headers, page = h.get("login")
    assert status == 200
    # A plain form: works without scripts, carries its CSRF token.
    assert '<form method="post" action="login">' in page
    assert re.search(r'<input type="hidden" name="_csrf" value="[0-9a-f]{48}">', page)
    cookie = headers["Set-Cookie"]
    assert "sunstone_login=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Content-Security-Policy" in headers
    # No absolute URL anywhere: it works behind a reverse proxy under any prefix.
    assert not re.search(r'(href|src|action)="(/|https?:)', page), page


def test_the_documented_command_line_serves_the_console(cloud, tmp_path):
    """docs/sunstone.md's "run" example as typed, but for the built binary, a free port
    (tests never take a fixed one) and the test's oned: its flags exist and the console it
    serves logs users in against that oned."""
    doc_examples = pytest.importorskip(
        "doc_examples", reason="tests/e2e/doc_examples.py (the documentation examples' helpers) is not in this tree")
    ex = doc_examples.doc_example("docs/sunstone.md", "run")
    args = shlex.split(doc_examples.localize(ex.text, cloud.oned.endpoint))
    assert args[0] == "sunstone" and "--listen" in args, args
    assert cloud.oned.endpoint in args, f"the example does not use the default endpoint: {args}"
    args[0] = str(sunstone_binary())
    args[args.index("--listen") + 1] = "127.0.0.1:0"
    url_file = tmp_path / "url"
    with open(tmp_path / "sunstone.log", "wb") as log:
        proc = subprocess.Popen([*args, "--url-file", str(url_file)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for("the example's sunstone listening",
                 lambda: proc.poll() is None and url_file.is_file() and url_file.read_text().strip(),
                 timeout=30)
        h = Http(url_file.read_text().strip())
        status, headers, _ = h.login(*ALICE)
        assert (status, headers["Location"]) == (303, "./"), (status, headers)
    finally:
        proc.terminate()
        proc.wait(10)


def test_login_without_scripts_and_the_session_cookie(cloud):
    h = Http(cloud.url)
    status, headers, _ = h.login(*ALICE)
    assert status == 303 and headers["Location"] == "./"
    cookies = headers.get_all("Set-Cookie")
    session = next(c for c in cookies if c.startswith("sunstone_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Secure" not in session
    status, _, page = h.get("")
    assert status == 200 and "Dashboard" in page
    # Behind a TLS-terminating proxy the cookie is Secure.
    s = Http(cloud.url)
    _, headers, form = s.get("login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in headers["Set-Cookie"]
    token = re.search(r'name="_csrf" value="([0-9a-f]+)"', form).group(1)
    # (A Secure cookie is not sent over plain HTTP by the client: hand it over as the browser
    # behind the proxy would.)
    status, headers, _ = s.post("login", {"_csrf": token, "username": ALICE[0], "password": ALICE[1]},
                                headers={"X-Forwarded-Proto": "https", "Cookie": f"sunstone_login={token}"})
    assert status == 303
    assert any("Secure" in c for c in headers.get_all("Set-Cookie") if c.startswith("sunstone_session="))
    # A login post without the form's token is refused, and nobody is logged in.
    x = Http(cloud.url)
    status, _, page = x.post("login", {"username": ALICE[0], "password": ALICE[1]})
    assert status == 403 and "CSRF" in page
    assert x.get("")[0] == 303


def test_failed_logins_are_slowed_down(cloud):
    cloud.one.user.allocate("carol", "carol-pw-1", "", [1])
    h = Http(cloud.url)
    for i in range(4):
        status, _, page = h.login("carol", f"wrong-{i}")
        assert status == 401, (i, status)
        # oned's own message.
        assert "authenticated" in page, page
    status, _, page = h.login("carol", "wrong-again")
    assert status == 429 and "Too many failed logins" in page
    # While it must wait, even the right password is not tried.
    status, _, page = h.login("carol", "carol-pw-1")
    assert status == 429
    time.sleep(2.2)
    status, _, _ = h.login("carol", "carol-pw-1")
    assert status == 303


def test_csrf_token_is_required_on_every_post(cloud):
    h = Http(cloud.url)
    h.login(*BOB)
    for data in ({}, {"_csrf": "0" * 64}):
        status, _, page = h.post("settings/ssh", {**data, "key": "ssh-ed25519 AAAA evil"})
        assert status == 403, status
        assert "CSRF" in page
    assert "SSH_PUBLIC_KEY" not in str(cloud.one.user.info(cloud.bob).TEMPLATE)
    # With the token (form field or header) it goes through.
    token = h.csrf("settings")
    assert h.post("settings/ssh", {"_csrf": token, "key": "ssh-ed25519 AAAA bob"})[0] == 303
    assert h.post("settings/ssh", {"key": "ssh-ed25519 AAAA bob2"}, headers={"X-CSRF-Token": token})[0] == 303


def test_idle_sessions_expire_and_logout_revokes_the_token(cloud, tmp_path):
    short = Sunstone(cloud.oned.endpoint, tmp_path / "short", args=["--idle-seconds", "2"]).start()
    tokens = lambda: len(cloud.one.user.info(cloud.bob).LOGIN_TOKEN)  # noqa: E731
    try:
        before = tokens()
        h = Http(short.url)
        assert h.login(*BOB)[0] == 303
        assert tokens() == before + 1
        assert h.get("")[0] == 200
        # A second browser of the same user shares the token (oned keeps ten per user).
        h2 = Http(short.url)
        assert h2.login(*BOB)[0] == 303
        assert tokens() == before + 1
        # Polls of an open page do not keep a session alive.
        time.sleep(1.2)
        assert h.get("vms/rows", headers={"X-Sunstone-Poll": "1", "HX-Request": "true"})[0] in (200, 204)
        time.sleep(1.2)
        status, headers, _ = h.get("")
        assert (status, headers["Location"]) == (303, "login")
        assert h2.get("")[0] == 303, "h2 idled out too"
        # Both ended: their token is revoked; a new login gets a new one.
        assert h.login(*BOB)[0] == 303
        wait_for("one token again", lambda: tokens() == before + 1, timeout=10)
        # Logout ends the session at once and, being its token's last, revokes it at oned.
        status, _, _ = h.post("logout", {"_csrf": h.csrf()})
        assert status == 303
        assert h.get("")[0] == 303
        wait_for("the token revoked", lambda: tokens() == before, timeout=10)
    finally:
        short.stop()


def test_page_weight_of_scripts_and_styles(cloud):
    """The ordinary pages' scripts and styles, as transferred (compressed): < 300 KB."""
    h = Http(cloud.url)
    h.login(*ALICE)
    total = 0
    seen = {}
    for page in ("", "vms", "templates", "settings"):
        _, _, html = h.get(page)
        for url in re.findall(r'<(?:script|link)[^>]+(?:src|href)="(static/[^"]+)"', html):
            if url in seen:
                continue
            u = urllib.parse.urlsplit(cloud.url + url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            conn.request("GET", u.path, headers={"Accept-Encoding": "gzip, br"})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, url
            assert "immutable" in r.getheader("Cache-Control", "")
            seen[url] = len(body)
            conn.close()
    total = sum(seen.values())
    print(f"scripts and styles: {total} bytes compressed: {seen}")
    assert seen and total < 300 * 1024, seen
    # And they are compressed at all.
    assert any(url.endswith("htmx.min.js") and n < 30_000 for url, n in seen.items()), seen


# ---------------------------------------------------------------------------------------
# In the browser


def test_plain_user_instantiates_and_drives_a_vm(cloud, browser):
    d = browser
    as_user(d, cloud, *ALICE)
    shot(d, "user-dashboard")
    d.get(cloud.url + "templates")
    css(d, f"a[href='templates/{cloud.template}/instantiate']").click()
    form = css(d, "#instantiate")
    form.find_element("name", "name").send_keys("web-ui")
    mem = form.find_element("name", "memory")
    # Outside the template's limits: refused with a message, nothing created.
    d.execute_script("arguments[0].removeAttribute('max'); arguments[0].value = '4096'", mem)
    form.find_element("css selector", "button[type=submit]").click()
    wait_until("the limit message", lambda: "MEMORY must be between 32 and 512" in css(d, "#flash").text)
    form = css(d, "#instantiate")
    mem = form.find_element("name", "memory")
    mem.clear()
    mem.send_keys("96")
    shot(d, "instantiate")
    form.find_element("css selector", "button[type=submit]").click()
    wait_until("the new VM's page", lambda: re.search(r"/vms/(\d+)$", d.current_url))
    vid = int(re.search(r"/vms/(\d+)$", d.current_url).group(1))
    vm = cloud.one.vm.info(vid)
    assert vm.NAME == "web-ui" and vm.TEMPLATE["MEMORY"] == "96"
    assert "alice@laptop" in vm.TEMPLATE["CONTEXT"]["SSH_PUBLIC_KEY"]
    assert vm.TEMPLATE["NIC"]["NETWORK_ID"] == str(cloud.vnet)

    # The list, left open: the row reaches RUNNING without a reload.
    d.get(cloud.url + "vms")
    d.execute_script("window.__same_page = 'yes'")
    row = f"#vm-rows tr[data-id='{vid}']"
    wait_until("RUNNING in the list", lambda: "RUNNING" in css(d, row).text, timeout=30)
    assert d.execute_script("return window.__same_page") == "yes", "the page was reloaded"
    assert "10.9.0.1" in css(d, row).text
    shot(d, "vm-list")

    # Power off, resume, terminate from the VM's page, each confirmed first.
    d.get(cloud.url + f"vms/{vid}")
    click_action(d, vid, "poweroff")
    accept_confirm(d, expect=f"Power off VM {vid}")
    wait_until("POWEROFF", lambda: head_state(d) == "POWEROFF", timeout=30)
    assert "poweroff requested" in css(d, "#flash").text
    click_action(d, vid, "resume")
    wait_until("RUNNING again", lambda: head_state(d) == "RUNNING", timeout=30)
    shot(d, "vm-page")
    # A refused confirmation sends nothing.
    click_action(d, vid, "terminate")
    d.switch_to.alert.dismiss()
    time.sleep(0.5)
    assert cloud.one.vm.info(vid).STATE == 3
    click_action(d, vid, "terminate")
    accept_confirm(d, expect=f"Terminate VM {vid}")
    wait_for("DONE", lambda: cloud.one.vm.info(vid).STATE == 6, timeout=30)
    wait_until("DONE on the page", lambda: head_state(d) == "DONE", timeout=10)
    assert not console_errors(d), console_errors(d)


def test_oned_errors_are_shown_as_oned_gave_them(cloud, browser):
    d = browser
    as_user(d, cloud, *ALICE)
    vid = cloud.one.vm.allocate('NAME="held"\nCPU="0.1"\nMEMORY="32"', True)
    cloud.one.vm.chown(vid, cloud.alice, 1)
    d.get(cloud.url + f"vms/{vid}")
    # A snapshot of a VM on hold: oned refuses, and its message is what the page shows.
    form = css(d, f"form[action='vms/{vid}/snapshot']")
    form.find_element("name", "name").send_keys("snap")
    form.find_element("css selector", "button").click()
    msg = wait_until("the error", lambda: css(d, "#flash .error").text)
    assert msg.startswith("[one.vm.snapshotcreate]") and "HOLD" in msg, msg
    shot(d, "error-message")


def test_admin_adds_a_dummy_host_and_sees_it_monitored(cloud, browser):
    d = browser
    as_user(d, cloud, "oneadmin", cloud.oned.admin_password)
    d.get(cloud.url + "admin/hosts")
    d.execute_script("window.__same_page = 'yes'")
    form = css(d, "#add-host")
    form.find_element("name", "name").send_keys("h-ui")
    from selenium.webdriver.support.ui import Select
    Select(form.find_element("name", "hypervisor")).select_by_value("dummy")
    form.find_element("css selector", "button").click()
    wait_until("the host added", lambda: "Host" in css(d, "#flash").text and "h-ui" in css(d, "#flash").text)
    hid = next(h.ID for h in cloud.one.hostpool.info().HOST if h.NAME == "h-ui")
    d.execute_script("window.__same_page = 'yes'")
    wait_until("h-ui MONITORED in the list",
               lambda: "MONITORED" in css(d, f"#host-rows tr[data-id='{hid}']").text, timeout=30)
    assert d.execute_script("return window.__same_page") == "yes"
    shot(d, "admin-hosts")
    assert not console_errors(d), console_errors(d)


def test_another_users_vm_page_is_refused(cloud, browser):
    d = browser
    vid = cloud.one.vm.allocate('NAME="alices"\nCPU="0.1"\nMEMORY="32"', True)
    cloud.one.vm.chown(vid, cloud.alice, 1)
    cloud.one.vm.chmod(vid, 1, 1, 0, 0, 0, 0, 0, 0, 0)
    as_user(d, cloud, *BOB)
    d.get(cloud.url + f"vms/{vid}")
    assert css(d, "h1").text == "Forbidden"
    text = css(d, "#flash").text
    assert "[one.vm.info]" in text and "Not authorized" in text, text
    assert "alices" not in d.page_source
    # Nor can bob act on it.
    h = Http(cloud.url)
    h.login(*BOB)
    h.post(f"vms/{vid}/action", {"_csrf": h.csrf(), "action": "terminate-hard"})
    assert cloud.one.vm.info(vid).STATE == 2


def test_a_form_posted_without_its_csrf_token_is_refused(cloud, browser):
    d = browser
    as_user(d, cloud, *ALICE)
    vid = cloud.one.vm.allocate('NAME="keep-name"\nCPU="0.1"\nMEMORY="32"', True)
    cloud.one.vm.chown(vid, cloud.alice, 1)
    d.get(cloud.url + f"vms/{vid}")
    form = css(d, f"form[action='vms/{vid}/rename']")
    d.execute_script("arguments[0].querySelector('input[name=_csrf]').remove()", form)
    field = form.find_element("name", "name")
    field.clear()
    field.send_keys("renamed")
    form.find_element("css selector", "button").click()
    wait_until("the refusal", lambda: css(d, "h1").text == "Forbidden")
    assert "carries no CSRF token" in css(d, "#flash").text
    assert cloud.one.vm.info(vid).NAME == "keep-name"


def test_script_in_an_attribute_shows_as_text(cloud, browser):
    d = browser
    vid = cloud.one.vm.allocate('NAME="x"\nCPU="0.1"\nMEMORY="32"', True)
    cloud.one.vm.chown(vid, cloud.alice, 1)
    quoted = XSS.replace('"', '\\"')
    cloud.one.vm.update(vid, f'LABEL="{quoted}"', 1)
    evil_key = "</textarea>" + XSS
    cloud.one.user.update(cloud.alice, f'SSH_PUBLIC_KEY="</textarea>{quoted}"', 1)
    try:
        as_user(d, cloud, *ALICE)
        d.get(cloud.url + f"vms/{vid}")
        time.sleep(1)
        assert d.execute_script("return window.__xss") is None
        assert "<script>window.__xss=1</script><img src=x onerror=" in css(d, "main").text
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in d.page_source
        shot(d, "escaped")
        d.get(cloud.url + "settings")
        assert d.execute_script("return window.__xss") is None
        assert css(d, "#sshkey textarea").get_attribute("value") == evil_key
    finally:
        cloud.one.user.update(cloud.alice, 'SSH_PUBLIC_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@laptop"', 1)


def test_admin_pages_create_what_they_say(cloud, browser):
    """Each admin page draws, and its forms reach oned: a VXLAN network with an address
    range, a cluster, a group, a user quota, an ACL rule."""
    from selenium.webdriver.support.ui import Select
    d = browser
    as_user(d, cloud, "oneadmin", cloud.oned.admin_password)
    for page in ("", "admin/hosts", f"admin/hosts/{cloud.host}", "admin/clusters", "admin/datastores",
                 "admin/datastores/0", "admin/vnets", "admin/users", f"admin/users/{cloud.alice}",
                 "admin/groups", "admin/groups/1", "admin/acls", "templates", f"templates/{cloud.template}",
                 "images", "networks", f"networks/{cloud.vnet}", "settings", "vms?state=any"):
        d.get(cloud.url + page)
        assert css(d, "h1").text not in ("Forbidden", "Not Found", "Bad Gateway"), (page, css(d, "#flash").text)
    assert not console_errors(d), console_errors(d)

    d.get(cloud.url + "admin/vnets")
    f = css(d, "#new-vnet")
    f.find_element("name", "name").send_keys("tenants-ui")
    Select(f.find_element("name", "driver")).select_by_value("vxlan")
    f.find_element("name", "phydev").send_keys("eth9")
    f.find_element("name", "vlan_id").send_keys("420")
    f.find_element("name", "ip").send_keys("172.31.0.10")
    size = f.find_element("name", "size")
    size.clear()
    size.send_keys("16")
    f.find_element("css selector", "button[type=submit]").click()
    wait_until("the new network's page", lambda: "tenants-ui" in css(d, "h1").text)
    vn = next(v for v in cloud.one.vnpool.info(-2, -1, -1).VNET if v.NAME == "tenants-ui")
    vn = cloud.one.vn.info(vn.ID)
    assert (vn.VN_MAD, vn.PHYDEV, str(vn.VLAN_ID)) == ("vxlan", "eth9", "420")
    assert vn.AR_POOL.AR[0].IP == "172.31.0.10" and str(vn.AR_POOL.AR[0].SIZE) == "16"
    shot(d, "admin-vnet")

    d.get(cloud.url + "admin/clusters")
    css(d, "form[action='admin/clusters'] input[name=name]").send_keys("rack-2")
    css(d, "form[action='admin/clusters'] button").click()
    wait_until("the cluster page", lambda: "rack-2" in css(d, "h1").text)
    assert any(c.NAME == "rack-2" for c in cloud.one.clusterpool.info().CLUSTER)

    d.get(cloud.url + f"admin/users/{cloud.alice}")
    q = css(d, "#quotas form")
    vms = q.find_element("name", "VMS")
    vms.clear()
    vms.send_keys("25")
    q.find_element("css selector", "button").click()
    wait_until("quota set", lambda: "quota done" in css(d, "#flash").text)
    vmq = cloud.one.user.info(cloud.alice).VM_QUOTA.VM
    assert (vmq[0] if isinstance(vmq, list) else vmq).VMS == "25"

    d.get(cloud.url + "admin/acls")
    css(d, "form[action='admin/acls'] input[name=rule]").send_keys(f"#{cloud.bob} NET/#{cloud.vnet} USE")
    css(d, "form[action='admin/acls'] button").click()
    wait_until("rule added", lambda: "ACL rule" in css(d, "#flash").text and "added" in css(d, "#flash").text)
    assert f"#{cloud.bob}" in css(d, "#acls").text
    # A rule oned cannot parse: oned's (or oca's) message, nothing added.
    before = len(cloud.one.acl.info().ACL)
    css(d, "form[action='admin/acls'] input[name=rule]").send_keys("nonsense rule")
    css(d, "form[action='admin/acls'] button").click()
    wait_until("the refusal", lambda: css_all(d, "#flash .error"))
    assert len(cloud.one.acl.info().ACL) == before
    assert not console_errors(d), console_errors(d)


def test_user_settings_password_and_key(cloud, browser):
    d = browser
    dave = cloud.one.user.allocate("dave", "dave-pw-1", "", [1])
    as_user(d, cloud, "dave", "dave-pw-1")
    d.get(cloud.url + "settings")
    f = css(d, "#password")
    f.find_element("name", "current").send_keys("wrong-pw-9")
    f.find_element("name", "new").send_keys("dave-pw-2")
    f.find_element("name", "again").send_keys("dave-pw-2")
    f.find_element("css selector", "button").click()
    wait_until("refused", lambda: "current password is wrong" in css(d, "#flash").text)
    f = css(d, "#password")
    f.find_element("name", "current").send_keys("dave-pw-1")
    f.find_element("name", "new").send_keys("dave-pw-2")
    f.find_element("name", "again").send_keys("dave-pw-2")
    f.find_element("css selector", "button").click()
    # oned drops the old password's tokens: the session goes on with a new one.
    wait_until("changed", lambda: "Password changed" in css(d, "#flash").text)
    key = css(d, "#sshkey textarea")
    key.clear()
    key.send_keys("ssh-ed25519 AAAAC3Nza dave@box")
    css(d, "#sshkey button").click()
    wait_until("saved", lambda: "SSH key saved" in css(d, "#flash").text)
    assert cloud.one.user.info(dave).TEMPLATE["SSH_PUBLIC_KEY"] == "ssh-ed25519 AAAAC3Nza dave@box"
    as_user(d, cloud, "dave", "dave-pw-2")
    # A session whose token oned no longer takes ends: back to the login page.
    h = Http(cloud.url)
    assert h.login("dave", "dave-pw-2")[0] == 303
    # oneadmin revokes every token of dave (raw: pyone cannot read the empty answer).
    assert cloud.oned.admin_call("one.user.login", "dave", "", 0, -1)[0] is True
    status, headers, _ = h.get("vms")
    assert (status, headers["Location"]) == (303, "login?next=vms")


def test_upload_an_image_from_the_browser(cloud, browser, tmp_path):
    """The images page's upload form: the file goes to oned's upload endpoint through
    sunstone with a progress bar, is registered as the user's image and arrives whole."""
    from selenium.webdriver.support.ui import Select

    d = browser
    as_user(d, cloud, *ALICE)
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = tmp_path / "disk.raw"
    f.write_bytes(data)
    d.get(cloud.url + "images")
    form = css(d, "form[action='images/upload']")
    form.find_element("name", "file").send_keys(str(f))
    form.find_element("name", "name").send_keys("uploaded disk")
    Select(form.find_element("name", "type")).select_by_value("DATABLOCK")
    # The progress bar's last maximum, kept across the page change that follows.
    d.execute_script("""
        const bar = document.querySelector("form[action='images/upload'] progress");
        new MutationObserver(() => sessionStorage.setItem("upload-max", String(bar.max)))
            .observe(bar, {attributes: true});""")
    form.find_element("css selector", "button").click()
    wait_until("the new image's page (or a failure)", lambda: re.search(r"/images/\d+$", d.current_url)
               or css_all(d, "form.failed"), timeout=60)
    failed = css_all(d, "form.failed [data-status]")
    assert not failed, f"the upload failed: {failed[0].text} {console_errors(d)}"
    iid = int(d.current_url.rsplit("/", 1)[1])
    assert "uploaded" in css(d, "#flash").text
    assert d.execute_script('return sessionStorage.getItem("upload-max")') == str(len(data))
    img = cloud.one.image.info(iid)
    assert (img.NAME, img.UNAME, img.TYPE) == ("uploaded disk", "alice", 2), (img.NAME, img.UNAME, img.TYPE)
    wait_for("the image READY", lambda: cloud.one.image.info(iid).STATE == 1, timeout=60)
    source = cloud.one.image.info(iid).SOURCE
    assert open(source, "rb").read() == data, source
    shot(d, "image-uploaded")

    # Below the browser: refusals are JSON messages for the page (no CSRF: 403 page).
    h = Http(cloud.url)
    assert h.login(*ALICE)[0] == 303
    csrf = h.csrf("images")

    def post(query: str, body: bytes, token: str | None):
        req = urllib.request.Request(cloud.url + "images/upload?" + query, data=body, method="POST")
        if token:
            req.add_header("X-CSRF-Token", token)
        try:
            with h.opener.open(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert post("name=x&datastore=1", b"abc", None)[0] == 403
    status, body = post("name=&datastore=1", b"abc", csrf)
    assert status == 400 and "needs a name" in json.loads(body)["error"], body
    # A datastore that does not exist: oned's own message, and nothing registered.
    before = len(cloud.one.imagepool.info(-2, -1, -1).IMAGE)
    status, body = post("name=y&datastore=999", b"abc", csrf)
    assert status == 422 and "[one.image.allocate]" in json.loads(body)["error"], body
    assert len(cloud.one.imagepool.info(-2, -1, -1).IMAGE) == before


def test_vm_page_snapshot_nic_disk_and_resize(cloud, browser):
    """The VM page's other operations, each through its form, each reaching oned: a
    snapshot, a NIC attached and detached, a new disk attached and detached, a resize."""
    d = browser
    alice_one = cloud.oned.client(*ALICE)
    vid = alice_one.vm.allocate('NAME="ops"\nCPU="0.1"\nMEMORY="64"\n'
                                'DISK=[TYPE="fs", SIZE="8"]', False)
    wait_for("RUNNING", lambda: (cloud.one.vm.info(vid).STATE, cloud.one.vm.info(vid).LCM_STATE) == (3, 3),
             timeout=30)

    def vm():
        return cloud.one.vm.info(vid)

    def vectors(name):
        v = vm().TEMPLATE.get(name)
        return [] if v is None else (v if isinstance(v, list) else [v])

    def running():
        return (vm().STATE, vm().LCM_STATE) == (3, 3)

    as_user(d, cloud, *ALICE)
    d.get(cloud.url + f"vms/{vid}")
    f = css(d, f"form[action='vms/{vid}/snapshot']")
    f.find_element("name", "name").send_keys("before-change")
    f.find_element("css selector", "button").click()
    wait_for("the snapshot", lambda: [s["NAME"] for s in vectors("SNAPSHOT")] == ["before-change"] and running(),
             timeout=30)

    d.get(cloud.url + f"vms/{vid}")
    css(d, f"form[action='vms/{vid}/nic'] button").click()
    wait_for("the NIC attached", lambda: len(vectors("NIC")) == 1 and running(), timeout=30)
    nic = vectors("NIC")[0]["NIC_ID"]
    d.get(cloud.url + f"vms/{vid}")
    css(d, f"form[action='vms/{vid}/nic/{nic}/detach'] button").click()
    accept_confirm(d, expect=f"Detach NIC {nic} from VM {vid}")
    wait_for("the NIC detached", lambda: not vectors("NIC") and running(), timeout=30)

    d.get(cloud.url + f"vms/{vid}")
    f = css(d, f"form[action='vms/{vid}/disk']")
    f.find_element("name", "size").send_keys("16")
    f.find_element("css selector", "button").click()
    wait_for("the disk attached", lambda: len(vectors("DISK")) == 2 and running(), timeout=30)
    new = vectors("DISK")[1]
    assert new["SIZE"] == "16", new
    d.get(cloud.url + f"vms/{vid}")
    css(d, f"form[action='vms/{vid}/disk/{new['DISK_ID']}/detach'] button").click()
    accept_confirm(d)
    wait_for("the disk detached", lambda: len(vectors("DISK")) == 1 and running(), timeout=30)

    # Resize, powered off (the ordinary OpenNebula resize).
    d.get(cloud.url + f"vms/{vid}")
    click_action(d, vid, "poweroff")
    accept_confirm(d)
    wait_until("POWEROFF", lambda: head_state(d) == "POWEROFF", timeout=30)
    f = css(d, f"form[action='vms/{vid}/resize']")
    mem = f.find_element("name", "memory")
    mem.clear()
    mem.send_keys("96")
    f.find_element("css selector", "button").click()
    accept_confirm(d, expect=f"Resize VM {vid}")
    wait_for("the new size", lambda: vm().TEMPLATE["MEMORY"] == "96", timeout=30)
    assert not console_errors(d), console_errors(d)
    alice_one.vm.action("terminate-hard", vid)


def test_behind_a_reverse_proxy_under_a_prefix(cloud, browser):
    """Through a proxy that serves the console under /cloud/ (docs/sunstone.md's nginx
    example): the redirect to the login form, the login, the pages and the live list all
    stay under the prefix."""
    d = browser
    p = PrefixProxy(cloud.url, "/cloud/")
    try:
        d.delete_all_cookies()
        d.get(p.url + "vms")
        wait_until("the login form under the prefix", lambda: d.current_url.startswith(p.url + "login"))
        login(d, p.url, *ALICE)
        assert d.current_url == p.url, d.current_url
        vid = cloud.oned.client(*ALICE).vm.allocate('NAME="proxied"\nCPU="0.1"\nMEMORY="32"', True)
        d.get(p.url + "vms")
        row = f"#vm-rows tr[data-id='{vid}']"
        wait_until("the VM in the list", lambda: css_all(d, row), timeout=10)
        d.execute_script("window.__same_page = 'yes'")
        cloud.one.vm.action("release", vid)
        wait_until("RUNNING in the list, through the proxy", lambda: "RUNNING" in css(d, row).text, timeout=30)
        assert d.execute_script("return window.__same_page") == "yes"
        css(d, f"{row} a[href='vms/{vid}']").click()
        wait_until("the VM's page", lambda: d.current_url == p.url + f"vms/{vid}")
        assert not console_errors(d), console_errors(d)
        assert any(r.startswith("/cloud/vms/rows") for r in p.requests), p.requests
        outside = [r for r in p.requests if not r.startswith("/cloud/")]
        assert not outside, f"requests that left the prefix: {outside}"
        cloud.one.vm.action("terminate-hard", vid)
    finally:
        p.close()
        d.delete_all_cookies()
