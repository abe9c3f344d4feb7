"""Times the web console in a real browser, for `one-bench --scenario sunstone`.

    python3 bench/sunstone_browser.py URL USER PASSWORD ROUNDS

Each round opens the login page in Debian's headless chromium (a fresh session), types the
user and password, submits, and reads the dashboard's Navigation Timing and Paint Timing:
the navigation that starts with the form submission (the POST, its 303 redirect and the
dashboard) has its time origin at the submission, so first-contentful-paint is "submit ->
dashboard drawn". The VM counts arrive after the page is drawn (a fragment fetched by the
page): its Resource Timing entry's responseEnd says when they were there.

Prints one JSON object per round, then a summary object. Needs selenium, /usr/bin/chromium
and /usr/bin/chromedriver (scripts/install-deps.sh); never downloads a browser.
"""

import json
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def browser():
    profile = tempfile.mkdtemp(prefix="one-bench-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-quic", "--disable-extensions", "--window-size=1360,900",
              f"--user-data-dir={profile}"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    return d, profile


def one_round(d, url, user, password):
    d.delete_all_cookies()
    d.get(url + "login")
    d.find_element(By.NAME, "username").send_keys(user)
    d.find_element(By.NAME, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "main.login button[type=submit]").click()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = d.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "const c = performance.getEntriesByType('resource').find(e => e.name.includes('dashboard/vms'));"
            "const p = performance.getEntriesByName('first-contentful-paint')[0];"
            "if (!n || !n.loadEventEnd || !p || !c || !document.querySelector('#vm-counts .big')) return null;"
            "return {url: location.pathname, redirect: n.redirectEnd - n.redirectStart,"
            " response_end: n.responseEnd, fcp: p.startTime, load: n.loadEventEnd,"
            " counts: c.responseEnd};")
        if done:
            return done
        time.sleep(0.05)
    raise SystemExit("the dashboard did not finish within 60 s")


def main():
    url, user, password, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    d, profile = browser()
    try:
        one_round(d, url, user, password)  # warm-up: the browser caches scripts and styles
        results = []
        for _ in range(rounds):
            r = one_round(d, url, user, password)
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)

    def pct(key, p):
        v = sorted(r[key] for r in results)
        return v[min(len(v) - 1, round((len(v) - 1) * p))]

    print(json.dumps({"summary": {k: {"p50": pct(k, 0.5), "p95": pct(k, 0.95)}
                                  for k in ("fcp", "load", "counts")}}))


if __name__ == "__main__":
    main()
