"""The VM's screen: `one.vm.vnc` tokens and oned's `/vnc/ID` websocket, through sunstone.

* With a dummy host (no libvirt): who gets a token, and which tokens the websocket refuses
  (made-up, reused, for another VM, expired) before anything is connected.
* With a real libvirt VM on localhost as a KVM host (its VNC server on the host's loopback,
  reached through the node agent's byte stream): the RFB handshake and the first
  framebuffer update arrive at the websocket sunstone serves, and noVNC in headless
  Chromium connects and draws, through a reverse proxy serving the console under /cloud/.
* With a real libvirt VM on a namespace host that oned reaches over SSH (its own sshd and
  libvirtd): QEMU listens on that host's loopback only, and the handshake and first
  framebuffer update arrive through sunstone.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import struct
import time
import urllib.parse

import pytest

from harness import Oned, wait_for
from sched_harness import Scheduler
from sunstone_util import Http, PrefixProxy, Sunstone, chrome, login, shot, wait_until

pytestmark = pytest.mark.db_independent

CONFIG = """
[monitoring]
dummy_interval_seconds = 0.3
[hosts]
vnc_token_seconds = 2
"""


# ---------------------------------------------------------------------------------------
# A minimal websocket client (RFC 6455), enough to speak RFB through sunstone and oned.


class WsRefused(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


class Ws:
    def __init__(self, url: str, headers: dict | None = None, timeout: float = 30):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        lines = [f"GET {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Protocol: binary"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            # The refusal is an ordinary HTTP answer on a kept-alive connection: read its
            # Content-Length, not until a close that would only come at the socket timeout.
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            body = self.buf
            try:
                while (m is None or len(body) < int(m.group(1))):
                    chunk = self.sock.recv(4096)
                    if not chunk:
                        break
                    body += chunk
            except OSError:
                pass
            self.sock.close()
            raise WsRefused(status, body.decode(errors="replace"))
        self.data = b""

    def send(self, payload: bytes):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _raw(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self) -> bytes:
        b0, b1 = self._raw(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._raw(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._raw(8))[0]
        payload = self._raw(n)
        if b0 & 0x0F == 8:
            raise EOFError("websocket closed")
        return payload

    def read(self, n: int) -> bytes:
        """Exactly n bytes of the stream carried in binary messages."""
        while len(self.data) < n:
            self.data += self._frame()
        out, self.data = self.data[:n], self.data[n:]
        return out

    def close(self):
        self.sock.close()


def rfb_first_update(ws: Ws) -> tuple[str, int, int]:
    """RFB 3.8 as a viewer: version, security None, ClientInit, a full framebuffer update
    request; returns (server version, width, height) once a FramebufferUpdate arrives."""
    version = ws.read(12).decode()
    assert re.fullmatch(r"RFB 003\.00\d\n", version), version
    ws.send(b"RFB 003.008\n")
    n = ws.read(1)[0]
    assert n > 0, "the server refused the connection"
    types = ws.read(n)
    assert 1 in types, f"security types {list(types)}: no None (the VNC server asks a password)"
    ws.send(bytes([1]))
    assert struct.unpack(">I", ws.read(4))[0] == 0, "security result: failed"
    ws.send(bytes([1]))  # ClientInit, shared
    width, height = struct.unpack(">HH", ws.read(4))
    ws.read(16)  # pixel format
    ws.read(struct.unpack(">I", ws.read(4))[0])  # desktop name
    ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    while True:
        kind = ws.read(1)[0]
        if kind == 0:  # FramebufferUpdate
            return version.strip(), width, height
        if kind == 2:  # Bell
            continue
        if kind == 3:  # ServerCutText
            ws.read(3)
            ws.read(struct.unpack(">I", ws.read(4))[0])
            continue
        raise AssertionError(f"unexpected RFB message type {kind}")


def listeners(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            addr, p = f[1].rsplit(":", 1)
            if int(p, 16) == port and f[3] == "0A":
                out.append(addr)
    return out


def oned_ws(oned: Oned, vid: int, token: str) -> str:
    u = urllib.parse.urlsplit(oned.endpoint)
    return f"ws://{u.hostname}:{u.port}/vnc/{vid}?token={token}"


def vnc_token(oned: Oned, user: str, password: str, vid: int):
    return oned.raw_call("one.vm.vnc", f"{user}:{password}", vid)


# ---------------------------------------------------------------------------------------
# Tokens (dummy host)


@pytest.fixture(scope="module")
def dummy_cloud(tmp_path_factory, oned_bin):
    base = tmp_path_factory.mktemp("vnc")
    cfg = base / "oned.toml"
    cfg.write_text(CONFIG)
    oned = Oned(base / "one", extra_args=["--config", str(cfg)], binary=oned_bin)
    oned.start()
    sched = Scheduler(oned, base / "sched").start()
    one = oned.client()
    hid = one.host.allocate("h1", "dummy", "dummy", -1)
    wait_for("h1 MONITORED", lambda: one.host.info(hid).STATE == 2, timeout=30)
    alice = one.user.allocate("alice", "alice-pw-1", "", [1])
    one.user.allocate("bob", "bob-pw-22", "", [1])
    alice_one = oned.client("alice", "alice-pw-1")
    vms = {}
    vms["vnc"] = alice_one.vm.allocate('NAME="screen"\nCPU="0.1"\nMEMORY="32"\nGRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]', False)
    vms["vnc2"] = alice_one.vm.allocate('NAME="screen2"\nCPU="0.1"\nMEMORY="32"\nGRAPHICS=[TYPE="VNC"]', False)
    vms["plain"] = alice_one.vm.allocate('NAME="noscreen"\nCPU="0.1"\nMEMORY="32"', False)
    vms["held"] = alice_one.vm.allocate('NAME="held"\nCPU="0.1"\nMEMORY="32"\nGRAPHICS=[TYPE="VNC"]', True)
    for k in ("vnc", "vnc2", "plain"):
        wait_for(f"{k} RUNNING", lambda v=vms[k]: one.vm.info(v).LCM_STATE == 3, timeout=30)
    yield oned, one, vms
    sched.stop()
    oned.stop()


def test_who_gets_a_screen_token(dummy_cloud):
    oned, one, vms = dummy_cloud
    ok, token, *_ = vnc_token(oned, "alice", "alice-pw-1", vms["vnc"])
    assert ok and re.fullmatch(r"[0-9a-f]{64}", token), token
    # oned put the VNC server on the host's loopback, whatever the template said.
    assert one.vm.info(vms["vnc"]).TEMPLATE["GRAPHICS"]["LISTEN"] == "127.0.0.1"
    # Another user without USE on the VM: refused, as OpenNebula refuses (AUTHORIZATION).
    ok, msg, code, *_ = vnc_token(oned, "bob", "bob-pw-22", vms["vnc"])
    assert (ok, code) == (False, 0x200) and "Not authorized" in msg, msg
    # No screen: a VM without GRAPHICS, a VM on hold.
    ok, msg, code, *_ = vnc_token(oned, "alice", "alice-pw-1", vms["plain"])
    assert (ok, code) == (False, 0x800) and "no VNC screen" in msg, msg
    ok, msg, code, *_ = vnc_token(oned, "alice", "alice-pw-1", vms["held"])
    assert not ok and "not on a host" in msg, msg
    ok, msg, code, *_ = vnc_token(oned, "alice", "wrong", vms["vnc"])
    assert (ok, code) == (False, 0x100)


def test_the_websocket_refuses_bad_tokens(dummy_cloud):
    oned, one, vms = dummy_cloud
    vid, other = vms["vnc"], vms["vnc2"]
    with pytest.raises(WsRefused) as e:
        Ws(oned_ws(oned, vid, "0" * 64))
    assert e.value.status == 403 and "unknown or already used" in e.value.body
    # Foreign: a token issued for another VM (and it is used up by the try).
    token = vnc_token(oned, "alice", "alice-pw-1", other)[1]
    with pytest.raises(WsRefused) as e:
        Ws(oned_ws(oned, vid, token))
    assert e.value.status == 403 and "another VM" in e.value.body
    with pytest.raises(WsRefused) as e:
        Ws(oned_ws(oned, other, token))
    assert e.value.status == 403 and "already used" in e.value.body
    # Expired (vnc_token_seconds = 2 here).
    token = vnc_token(oned, "alice", "alice-pw-1", vid)[1]
    time.sleep(2.3)
    with pytest.raises(WsRefused) as e:
        Ws(oned_ws(oned, vid, token))
    assert e.value.status == 403 and "expired" in e.value.body
    # A good token passes the checks; a dummy host has no byte stream to carry the screen.
    token = vnc_token(oned, "alice", "alice-pw-1", vid)[1]
    with pytest.raises(WsRefused) as e:
        Ws(oned_ws(oned, vid, token))
    assert e.value.status == 503 and "byte stream" in e.value.body
    # Reused: the good token was spent by that try.
    with pytest.raises(WsRefused) as e:
        Ws(oned_ws(oned, vid, token))
    assert e.value.status == 403


def screen_through_sunstone(sun: Sunstone, vid: int):
    """As alice in sunstone: the console's websocket is refused without the page's CSRF
    token; with it, the RFB handshake and a first framebuffer update arrive."""
    h = Http(sun.url)
    assert h.login("alice", "alice-pw-1")[0] == 303
    csrf = h.csrf(f"vms/{vid}")
    cookie = "; ".join(f"{c.name}={c.value}" for c in h.jar)
    with pytest.raises(WsRefused) as e:
        Ws(sun.url.replace("http:", "ws:") + f"vms/{vid}/console/ws", headers={"Cookie": cookie})
    assert e.value.status == 403
    ws = Ws(sun.url.replace("http:", "ws:") + f"vms/{vid}/console/ws?csrf={csrf}", headers={"Cookie": cookie})
    try:
        version, w, hgt = rfb_first_update(ws)
    finally:
        ws.close()
    assert w > 0 and hgt > 0
    print(f"RFB {version}, {w}x{hgt}, first framebuffer update received")


# ---------------------------------------------------------------------------------------
# A real libvirt VM

from kvm_cluster_util import NETNS_HOST, KvmCluster, LibvirtHost, hostenv_skip_reason  # noqa: E402
from kvm_util import kvm_cloud, kvm_env, run, skip  # noqa: E402,F401  (fixtures)


def test_screen_of_a_real_vm_through_sunstone(kvm_env, kvm_cloud, tmp_path):  # noqa: F811
    cloud = kvm_cloud("vnc")
    hid = cloud.add_localhost()
    assert hid >= 0
    alice = cloud.one.user.allocate("alice", "alice-pw-1", "", [1])
    # The template asks for the network; oned puts the screen on the host's loopback.
    tmpl = cloud.guest_template("screen").replace('LISTEN="127.0.0.1"', 'LISTEN="0.0.0.0"')
    assert 'LISTEN="0.0.0.0"' in tmpl
    vid = cloud.one.vm.allocate(tmpl, False)
    cloud.one.vm.chown(vid, alice, 1)
    cloud.one.vm.deploy(vid, hid, False, -1)
    cloud.wait_vm(vid, (3, 3), timeout=180)
    g = cloud.one.vm.info(vid).TEMPLATE["GRAPHICS"]
    assert g["LISTEN"] == "127.0.0.1", g
    port = int(g["PORT"])
    # QEMU listens for it on the loopback only.
    assert listeners(port) == ["0100007F"], listeners(port)

    sun = Sunstone(cloud.oned.endpoint, tmp_path / "sunstone").start()
    try:
        screen_through_sunstone(sun, vid)

        # In Chromium, through a reverse proxy that serves the console under /cloud/.
        proxy = PrefixProxy(sun.url, "/cloud/")
        d = chrome()
        try:
            login(d, proxy.url, "alice", "alice-pw-1")
            d.get(proxy.url + f"vms/{vid}/console")
            wait_until("noVNC connected", lambda: d.execute_script("return window.oneConsole && window.oneConsole.connected"), timeout=60)
            wait_until("the screen drawn", lambda: d.execute_script("return window.oneConsole.drawn"), timeout=60)
            shot(d, "vnc-console")
            assert any(r.startswith(f"/cloud/vms/{vid}/console/ws") for r in proxy.requests), proxy.requests
        finally:
            d.quit()
            proxy.close()
    finally:
        sun.stop()


def test_screen_of_a_vm_on_a_namespace_host_over_ssh(kvm_env, request, tmp_path):  # noqa: F811
    """The same through a host oned reaches over SSH: a network namespace with its own sshd
    and libvirtd (tests/hostenv/netns-host.sh), whose QEMU listens on the namespace's own
    loopback, reachable only by the node agent running there."""
    why = hostenv_skip_reason()
    if why:
        skip(why)
    failed_before = request.session.testsfailed
    c = KvmCluster(kvm_env, "vnc")
    try:
        # One host of its own (name, subnet and bridge apart from test_kvm_cluster.py's).
        n = os.getpid() % 100 + 120
        host = LibvirtHost(f"kcv{n}", f"10.76.{n}.2", f"onekv{n}", c.dir / "host-v")
        pub = c.oned.data_dir / "ssh" / "id_ed25519.pub"
        wait_for("oned's key pair", pub.is_file, timeout=10)
        c.hosts.append(host)
        host.up(pub)
        hid = c.one.host.allocate(host.ip, "kvm", "kvm", -1)
        wait_for(f"host {host.name} MONITORED", lambda: c.host_state(hid) == 2, timeout=90)
        alice = c.one.user.allocate("alice", "alice-pw-1", "", [1])
        vid = c.one.vm.allocate(c.guest_template("screen"), False)
        c.one.vm.chown(vid, alice, 1)
        c.one.vm.deploy(vid, hid, False, -1)
        c.wait_vm(vid, (3, 3), timeout=180)
        port = int(c.one.vm.info(vid).TEMPLATE["GRAPHICS"]["PORT"])
        # Inside the host, QEMU listens on its loopback only.
        tcp = run([str(NETNS_HOST), "exec", "--dir", str(host.dir), "cat", "/proc/net/tcp"], check=True).stdout
        found = [f[1].rsplit(":", 1)[0] for f in (line.split() for line in tcp.splitlines()[1:])
                 if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A"]
        assert found == ["0100007F"], found

        sun = Sunstone(c.oned.endpoint, tmp_path / "sunstone").start()
        try:
            screen_through_sunstone(sun, vid)
        finally:
            sun.stop()
    finally:
        c.close(request.session.testsfailed > failed_before)
