"""Open a page in headless Chromium and report what a user would see go wrong.

Drives Debian's ``chromium`` over the DevTools protocol (a websocket), so
no browser download and no WebDriver are needed: console messages,
uncaught exceptions and failed loads are collected while the page loads,
then the page is asked how many of its images decoded.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The browser executable on PATH, if any."""
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@dataclasses.dataclass
class PageCheck:
    """What loading a page showed."""

    title: str
    images: int
    images_loaded: int
    errors: list[str]
    text: str


def check_page(path: Path, browser: str, timeout: float = 60.0) -> PageCheck:
    """Load ``path`` in headless ``browser``; collect console errors and image loads."""
    # Chromium's helper processes can outlive the killed browser for a moment and
    # still write to the profile: its removal must not fail the check.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # Its own temporary files (org.chromium.Chromium.*) go with the profile,
            # not into /tmp for good.
            env={**os.environ, "TMPDIR": profile},
        )
        try:
            return _drive(process, path, timeout)
        finally:
            process.kill()
            process.wait()


def _drive(process: subprocess.Popen[str], path: Path, timeout: float) -> PageCheck:
    deadline = time.monotonic() + timeout
    port = None
    assert process.stderr is not None
    while port is None:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            raise RuntimeError(f"the browser exited ({process.returncode}) before listening")
        match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        port = int(match[1]) if match else None
        if time.monotonic() > deadline:
            raise TimeoutError("the browser did not start listening")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
        targets = json.load(answer)
    page = next(t for t in targets if t["type"] == "page")
    socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout)
    ids = itertools.count(1)
    errors: list[str] = []
    loaded = False

    def send(method: str, **params: Any) -> dict[str, Any]:
        nonlocal loaded
        number = next(ids)
        socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            _collect(message, errors)
            loaded = loaded or message.get("method") == "Page.loadEventFired"

    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            send(f"{domain}.enable")
        send("Page.navigate", url=path.resolve().as_uri())
        while not loaded:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not finish loading")
            message = json.loads(socket.recv())
            _collect(message, errors)
            loaded = message.get("method") == "Page.loadEventFired"
        script = (
            "JSON.stringify({title: document.title, text: document.body.innerText,"
            " images: document.images.length,"
            " loaded: Array.from(document.images)"
            ".filter(i => i.complete && i.naturalWidth > 0).length})"
        )
        result = send("Runtime.evaluate", expression=script, returnByValue=True)
        state = json.loads(result["result"]["value"])
    finally:
        socket.close()
    return PageCheck(state["title"], state["images"], state["loaded"], errors, state["text"])


def _collect(message: dict[str, Any], errors: list[str]) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.exceptionThrown":
        errors.append(f"exception: {params['exceptionDetails'].get('text')}")
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        errors.append(f"console.{params['type']}: {params.get('args')}")
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        errors.append(f"log: {params['entry'].get('text')}")
    elif method == "Network.loadingFailed":
        errors.append(f"load failed: {params.get('errorText')}")
