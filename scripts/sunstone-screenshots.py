"""Makes the screenshots of the web console that README.md and docs/sunstone.md show
(docs/images/sunstone-*.png). Run through scripts/sunstone-screenshots.sh; not a test.

Starts a throwaway oned (fast dummy monitoring), one-scheduler and sunstone, fills the cloud
with a little of everything (dummy hosts, a network, a template, VMs of two users, some in
other states than RUNNING), waits for monitoring samples so the graphs have a line, and
photographs the main pages in Debian's headless chromium.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402
from sched_harness import Scheduler  # noqa: E402
from sunstone_util import Sunstone, chrome, css, login  # noqa: E402

OUT = REPO / "docs" / "images"


def wait(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sunstone-shots-"))
    cfg = work / "oned.toml"
    cfg.write_text("[monitoring]\ndummy_interval_seconds = 1\nhistory_min_spacing_seconds = 1\n")
    oned = harness.Oned(work / "one", extra_args=["--config", str(cfg)])
    oned.start()
    sched = Scheduler(oned, work / "sched").start()
    sun = Sunstone(oned.endpoint, work / "sunstone").start()
    one = oned.client()
    driver = None
    try:
        hosts = [one.host.allocate(f"node{i}", "dummy", "dummy", -1) for i in range(1, 4)]
        alice = one.user.allocate("alice", "alice-password", "", [1])
        one.user.update(alice, 'SSH_PUBLIC_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI alice@laptop"', 1)
        one.user.allocate("bob", "bob-password", "", [1])
        one.user.quota(alice, 'VM=[VMS="10", CPU="4", MEMORY="4096", RUNNING_VMS="8"]')
        vn = one.vn.allocate('NAME="office-lan"\nVN_MAD="bridge"\nBRIDGE="br0"\nGATEWAY="10.0.0.1"\n'
                             'AR=[TYPE="IP4", IP="10.0.0.10", SIZE="100"]', -1)
        one.vn.chmod(vn, 1, 1, 0, 1, 0, 0, 1, 0, 0)
        one.vn.allocate('NAME="tenants"\nVN_MAD="vxlan"\nPHYDEV="eth1"\nVLAN_ID="120"\n'
                        'AR=[TYPE="IP4", IP="172.16.0.10", SIZE="250"]', -1)
        t = one.template.allocate(
            'NAME="debian-small"\nCPU="0.5"\nVCPU="1"\nMEMORY="512"\nNIC=[NETWORK_ID="%d"]\n'
            'GRAPHICS=[TYPE="VNC", LISTEN="127.0.0.1"]\nCONTEXT=[NETWORK="YES", SSH_PUBLIC_KEY="$USER[SSH_PUBLIC_KEY]"]\n'
            'USER_INPUTS=[MEMORY="M|range||256..2048|512", VCPU="O|list||1,2,4|1"]' % vn)
        one.template.chmod(t, 1, 1, 0, 1, 0, 0, 1, 0, 0)
        wait("hosts MONITORED", lambda: all(one.host.info(h).STATE == 2 for h in hosts))
        alice_one = oned.client("alice", "alice-password")
        vms = [alice_one.template.instantiate(t, name, False, "", False)
               for name in ("web-1", "web-2", "db-1", "build", "cache")]
        wait("VMs RUNNING", lambda: all(one.vm.info(v).LCM_STATE == 3 for v in vms))
        alice_one.vm.action("poweroff", vms[3])
        alice_one.vm.action("suspend", vms[4])
        # Monitoring samples for the graphs.
        time.sleep(12)

        driver = chrome(1360, 860)
        login(driver, sun.url, "alice", "alice-password")
        time.sleep(1)
        driver.save_screenshot(str(OUT / "sunstone-dashboard.png"))
        driver.get(sun.url + "vms")
        time.sleep(1.5)
        driver.save_screenshot(str(OUT / "sunstone-vms.png"))
        driver.get(sun.url + f"vms/{vms[0]}")
        time.sleep(1)
        driver.save_screenshot(str(OUT / "sunstone-vm.png"))
        driver.execute_script("document.querySelector('.charts').scrollIntoView()")
        time.sleep(0.3)
        driver.save_screenshot(str(OUT / "sunstone-vm-graphs.png"))
        driver.get(sun.url + f"templates/{t}/instantiate")
        driver.save_screenshot(str(OUT / "sunstone-instantiate.png"))

        driver.delete_all_cookies()
        driver.get(sun.url + "login")
        driver.save_screenshot(str(OUT / "sunstone-login.png"))
        login(driver, sun.url, "oneadmin", oned.admin_password)
        driver.get(sun.url + "admin/hosts")
        time.sleep(1)
        driver.save_screenshot(str(OUT / "sunstone-hosts.png"))
        driver.get(sun.url + "admin/vnets")
        driver.save_screenshot(str(OUT / "sunstone-vnets.png"))
        print(f"screenshots in {OUT}:")
        for p in sorted(OUT.glob("sunstone-*.png")):
            print(f"  {p.relative_to(REPO)}")
        _ = css  # (imported for interactive use)
    finally:
        if driver:
            driver.quit()
        sun.stop()
        sched.stop()
        oned.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
