"""Storage test helpers: a local HTTP server for images registered from URLs, image
waiting, qemu-img, and what a guest sees on a disk (test_storage_*.py)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from pathlib import Path

from harness import parse_xml, wait_for

# Image states
READY, USED, DISABLED, LOCKED, ERROR, CLONE, USED_PERS = 1, 2, 3, 4, 5, 6, 8

IMAGE_DS, FILE_DS, SYSTEM_DS = 1, 2, 0


class HttpServer:
    """A threaded HTTP/1.0 server on a free loopback port, started by the test:

    * `/f/NAME`: the bytes of `files[NAME]` (HEAD answers the length);
    * `/stall/N`: announces 100 MiB, sends N bytes, then nothing (until `stop`);
    * `/nolength/NAME`: `files[NAME]` without Content-Length;
    * `/redirect?to=URL`: 302 to URL.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.stop_event = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _answer(self, head: bool):
                path = self.path
                if path.startswith("/f/") and path[3:] in outer.files:
                    body = outer.files[path[3:]]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
                elif path.startswith("/nolength/") and path[10:] in outer.files:
                    self.send_response(200)
                    self.end_headers()
                    if not head:
                        self.wfile.write(outer.files[path[10:]])
                elif path.startswith("/stall/"):
                    self.send_response(200)
                    self.send_header("Content-Length", str(100 << 20))
                    self.end_headers()
                    if not head:
                        self.wfile.write(b"\0" * int(path[7:]))
                        self.wfile.flush()
                        outer.stop_event.wait(120)
                elif path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", path[len("/redirect?to="):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_GET(self):
                self._answer(False)

            def do_HEAD(self):
                self._answer(True)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_frontend(oned, timeout=30):
    """Waits until oned's frontend agent made the default datastores (and wrote the token
    of the shared system datastore 0)."""
    root = parse_xml(oned.admin_xml("one.datastore.info", SYSTEM_DS)).findtext("BASE_PATH")
    wait_for("the frontend agent", lambda: (Path(root) / ".one-rs-datastore").is_file(), timeout=timeout)


def image_doc(oned, iid):
    return parse_xml(oned.admin_xml("one.image.info", iid))


def image_state(oned, iid) -> int:
    return int(image_doc(oned, iid).findtext("STATE"))


def wait_image(oned, iid, want=READY, timeout=60):
    """Waits until image `iid` leaves LOCKED; fails unless it is then in `want` (the image's
    ERROR in the message)."""
    wait_for(f"image {iid} to leave LOCKED", lambda: image_state(oned, iid) != LOCKED, timeout=timeout, step=0.05)
    doc = image_doc(oned, iid)
    got = int(doc.findtext("STATE"))
    assert got == want, f"image {iid} is in state {got}, not {want}: {doc.findtext('TEMPLATE/ERROR')}"
    return doc


def have_qemu_img() -> bool:
    return shutil.which("qemu-img") is not None


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


def write_random(path: Path, size: int) -> bytes:
    data = bytes((i * 7919 + 13) % 251 for i in range(min(size, 1 << 16)))
    data = (data * (size // len(data) + 1))[:size]
    path.write_bytes(data)
    return data


def run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"
    return r.stdout


def first_sector(path: Path, fmt: str = "qcow2") -> bytes:
    """What a guest sees in the first 64 bytes of a disk (through its chain)."""
    out = path.parent / f".{path.name}.flat"
    try:
        run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(path), str(out)])
        with open(out, "rb") as f:
            return f.read(64).split(b"\0")[0]
    finally:
        out.unlink(missing_ok=True)


def source_image(one, data_dir: Path, name: str, mb: int, fmt: str = "qcow2", extra: str = "") -> tuple[int, Path]:
    """An empty image of `mb` MiB made with qemu-img in the image datastore (datastore 1)
    and registered with its SOURCE, as an administrator may: READY at once. `extra`: more
    template lines."""
    path = data_dir / "datastores" / str(IMAGE_DS) / name
    run(["qemu-img", "create", "-q", "-f", fmt, str(path), f"{mb}M"])
    path.chmod(0o644)
    iid = one.image.allocate(
        f'NAME="{name}"\nSOURCE="{path}"\nFORMAT="{fmt}"\nSIZE="{mb}"\nTYPE="DATABLOCK"\n{extra}', IMAGE_DS)
    return iid, path

