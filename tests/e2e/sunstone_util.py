"""The web console in tests: a real `sunstone` process against a test's oned, Debian's
headless chromium driven through chromedriver (selenium), and a small cookie-aware HTTP
client for what is checked below the browser (redirects, status codes, headers).

    from sunstone_util import Sunstone, chrome, login, Http

    s = Sunstone(oned.endpoint, tmp_path / "sunstone").start()
    driver = chrome()                    # skips, saying why, without chromium / chromedriver
    login(driver, s.url, "alice", "pw")  # the login form, as a user fills it
    shot(driver, "dashboard")            # a screenshot into the scratch folder

The sunstone binary is found like oned's: $SUNSTONE_BIN, else $CARGO_TARGET_DIR/debug/sunstone,
else <repo>/target/debug/sunstone (`cargo build -p sunstone`). Screenshots go to
$ONE_TEST_SCREENSHOTS, else /tmp/one-rs-screenshots/<pid> (never into the repository).
Nothing here downloads a browser or a driver: /usr/bin/chromium and /usr/bin/chromedriver
come from Debian (scripts/install-deps.sh).
"""

from __future__ import annotations

import atexit
import http.client
import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import workspace_binary

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
START_TIMEOUT = 30.0

_LIVE: set["Sunstone"] = set()
_LOCK = threading.Lock()


@atexit.register
def _kill_leftovers():
    with _LOCK:
        live = list(_LIVE)
    for s in live:
        try:
            s.stop()
        except Exception:  # noqa: BLE001
            pass


def sunstone_binary() -> Path:
    return workspace_binary("sunstone", "SUNSTONE_BIN")


def screenshot_dir() -> Path:
    d = Path(os.environ.get("ONE_TEST_SCREENSHOTS") or f"/tmp/one-rs-screenshots/{os.getpid()}")
    d.mkdir(parents=True, exist_ok=True)
    return d


class Sunstone:
    """A sunstone process serving on 127.0.0.1:0 for the oned at `endpoint`."""

    def __init__(self, endpoint: str, workdir: Path | str, args: list[str] | tuple[str, ...] = ()):
        self.endpoint = endpoint
        self.workdir = Path(workdir)
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "Sunstone":
        self.workdir.mkdir(parents=True, exist_ok=True)
        url_file = self.workdir / "url"
        url_file.unlink(missing_ok=True)
        cmd = [str(sunstone_binary()), "--listen", "127.0.0.1:0", "--endpoint", self.endpoint,
               "--url-file", str(url_file), *self.args]
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.workdir / "sunstone.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, start_new_session=True)
        with _LOCK:
            _LIVE.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if url_file.is_file() and url_file.read_text().strip():
                self.url = url_file.read_text().strip()
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        out = self.logs()
        self.stop()
        pytest.fail(f"sunstone did not start ({' '.join(cmd)}):\n{out}", pytrace=False)

    def logs(self) -> str:
        p = self.workdir / "sunstone.log"
        return p.read_text(errors="replace") if p.is_file() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with _LOCK:
            _LIVE.discard(self)


def chrome(width: int = 1360, height: int = 900):
    """A headless Debian chromium driven by Debian's chromedriver; skips the test with the
    reason when either is missing."""
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.skip(f"{path} not found: apt-get install {pkg} (scripts/install-deps.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (scripts/install-deps.sh puts it in the venv)")
    profile = tempfile.mkdtemp(prefix="one-rs-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-quic", "--disable-extensions",
              f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        opts.add_argument(a)
    # Let the tests read the browser's console (errors from scripts, CSP violations).
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    orig_quit = driver.quit

    def quit_and_clean():
        try:
            orig_quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def shot(driver, name: str) -> Path:
    """Saves a screenshot of the page into the scratch folder."""
    path = screenshot_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_until(what: str, check, timeout: float = 20.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # noqa: BLE001 - a stale element while htmx swaps
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last value {last!r}", pytrace=False)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver, selector: str):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def login(driver, base: str, user: str, password: str, next_path: str = ""):
    """Logs in through the login form; returns once the next page is drawn."""
    driver.get(base + "login" + (f"?next={urllib.parse.quote(next_path, safe='')}" if next_path else ""))
    css(driver, "input[name=username]").send_keys(user)
    css(driver, "input[name=password]").send_keys(password)
    css(driver, "main.login button[type=submit]").click()
    wait_until("the page after login", lambda: "/login" not in driver.current_url
               or css_all(driver, "#login-error"))
    errors = css_all(driver, "#login-error")
    assert not errors, f"login as {user} failed: {errors[0].text}"


def accept_confirm(driver, expect: str | None = None, timeout: float = 5.0) -> str:
    """Accepts the page's confirmation dialog; returns its question."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(ec.alert_is_present())
    alert = driver.switch_to.alert
    text = alert.text
    if expect:
        assert expect in text, text
    alert.accept()
    return text


def console_errors(driver) -> list[str]:
    """Errors the page's scripts reported (CSP violations included) since the last call;
    HTTP error statuses the tests asked for ("Failed to load resource") are left out."""
    try:
        return [e["message"] for e in driver.get_log("browser")
                if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]]
    except Exception:  # noqa: BLE001
        return []


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Http:
    """A cookie-aware HTTP client that does not follow redirects: each answer is
    (status, headers, body text)."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, method: str, path: str, data: dict | None = None, headers: dict | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        if body is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.headers, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode(errors="replace")

    def get(self, path: str, headers: dict | None = None):
        return self.request("GET", path, headers=headers)

    def post(self, path: str, data: dict, headers: dict | None = None):
        return self.request("POST", path, data=data, headers=headers)

    def login(self, user: str, password: str) -> tuple[int, dict, str]:
        status, _, page = self.get("login")
        assert status == 200, status
        token = re.search(r'name="_csrf" value="([0-9a-f]+)"', page).group(1)
        return self.post("login", {"_csrf": token, "username": user, "password": password, "next": ""})

    def csrf(self, path: str = "") -> str:
        """The session's CSRF token, read from a page."""
        _, _, page = self.get(path)
        return re.search(r'name="_csrf" value="([0-9a-f]+)"', page).group(1)


class PrefixProxy:
    """A reverse proxy that serves the console under a path prefix, the way the nginx example
    of docs/sunstone.md does (`location /cloud/ { proxy_pass http://sunstone/; }`): every
    request's path loses the prefix on the way in; answers, and a websocket once upgraded,
    pass through byte for byte. So every URL the browser follows must be relative.

        p = PrefixProxy(sunstone.url, "/cloud/")
        driver.get(p.url + "login")       # http://127.0.0.1:PORT/cloud/login
    """

    def __init__(self, upstream: str, prefix: str = "/cloud/"):
        import socket
        u = urllib.parse.urlsplit(upstream)
        self.upstream = (u.hostname, u.port)
        self.prefix = prefix.encode()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.srv.getsockname()[1]}{prefix}"
        self.requests: list[str] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._closed = True
        self.srv.close()

    def _accept(self):
        while not self._closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(2)
            except OSError:
                pass

    def _serve(self, c):
        import socket
        try:
            up = socket.create_connection(self.upstream, timeout=30)
            up.settimeout(None)
        except OSError:
            c.close()
            return
        threading.Thread(target=self._pipe, args=(up, c), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        up.shutdown(1)
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                method, path, version = lines[0].split(b" ", 2)
                self.requests.append(path.decode(errors="replace"))
                if path.startswith(self.prefix):
                    path = b"/" + path[len(self.prefix):]
                headers = lines[1:]
                length = next((int(h.split(b":", 1)[1]) for h in headers
                               if h.lower().startswith(b"content-length:")), 0)
                upgrade = any(h.lower().startswith(b"upgrade:") for h in headers)
                while len(buf) < length:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                up.sendall(b" ".join([method, path, version]) + b"\r\n"
                           + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)
                if upgrade:
                    # A websocket from here on: raw bytes both ways.
                    if buf:
                        up.sendall(buf)
                    self._pipe(c, up)
                    return
        except (OSError, ValueError):
            for s in (c, up):
                try:
                    s.close()
                except OSError:
                    pass
