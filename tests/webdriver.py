"""A minimal W3C WebDriver client over httpx, for the console's browser test.

Only what that test needs: open a page, find elements, type, click, accept a confirm() dialog, run a
script, read the browser's console log and take a screenshot. Debian's `chromium` and
`chromium-driver` packages provide the browser and driver; `available()` tells whether they are on
this machine, and tests skip without them (they are not a dependency of the project).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from shared.processes import free_port

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def available() -> bool:
    return bool(shutil.which("chromedriver") and browser())


class Session:
    """One headless browser window driven through chromedriver's HTTP API."""

    def __init__(self, driver: httpx.Client, session_id: str) -> None:
        self.driver = driver
        self.path = f"/session/{session_id}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.driver.request(method, f"{self.path}{path}", json=body)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"WebDriver {path}: {value.get('error')}: {value.get('message', '')[:300]}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return str(self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT])

    def type(self, css: str, text: str) -> None:
        """Types into the element; for a file input, `text` is a local path (newline-separated for several)."""
        self._call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/click", {})

    def accept_dialog(self) -> None:
        self._call("POST", "/alert/accept", {})

    def run(self, script: str, *args: Any) -> Any:
        """The value of a JavaScript function body (`return ...`) called with `args`."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script: str, *args: Any, timeout: float = 30) -> Any:
        """Polls `script` until it returns something truthy; that value."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if value := self.run(script, *args):
                return value
            time.sleep(0.1)
        raise TimeoutError(f"still false after {timeout} s: {script}")

    def console_log(self) -> list[str]:
        """Messages of the page's console since the last call (CSP violations are reported there)."""
        return [entry["message"] for entry in self._call("POST", "/se/log", {"type": "browser"})]

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))


@contextmanager
def chromium(width: int = 1200, height: int = 900) -> Iterator[Session]:
    """chromedriver on a free port and one headless Chromium session; both stopped on exit."""
    port = free_port()
    driver_process = subprocess.Popen(
        ["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as driver:
            _wait_for_driver(driver)
            created = driver.post("/session", json={"capabilities": {"alwaysMatch": _capabilities(width, height)}})
            created.raise_for_status()
            session_id = created.json()["value"]["sessionId"]
            try:
                yield Session(driver, session_id)
            finally:
                driver.delete(f"/session/{session_id}")
    finally:
        driver_process.terminate()
        driver_process.wait(timeout=10)


def _capabilities(width: int, height: int) -> dict[str, Any]:
    """Headless Chromium (no sandbox: tests may run as root) that keeps the page's console log."""
    options = {
        "binary": browser(),
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}"],
    }
    return {"browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}


def _wait_for_driver(driver: httpx.Client) -> None:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            if driver.get("/status").json()["value"]["ready"]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("chromedriver did not answer within 20 s")
