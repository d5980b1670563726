"""Fixtures for the run view browser tests: a static server, real Chromium, and the anywidget bundle.

The server maps ``/widgets/`` to ``nbpipe/widgets`` and ``/harness/`` to this folder, nothing else.
Fixture names carry an ``rv_`` prefix because other browser tests share this folder.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDGETS = ROOT / "nbpipe" / "widgets"
HERE = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"\./(run_view_\w+\.js)";\s*$', re.M)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serve only the widget folder and the harness folder."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for prefix, base in (("/widgets/", WIDGETS), ("/harness/", HERE)):
            if path.startswith(prefix):
                target = (base / path[len(prefix):]).resolve()
                if target.is_relative_to(base):
                    return str(target)
        return str(HERE / "__missing__")

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="session")
def rv_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")  # not session: Playwright's loop must be gone before other folders' tests
def rv_browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing. Install it with: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def rv_page(rv_browser: Any, rv_server: str) -> Iterator[Any]:
    """A harness page with ``window.RV`` (run_view.js) loaded; fails the test on any page error."""
    context = rv_browser.new_context(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    blocked: list[str] = []  # the sandbox refusing an HTML preview's script is expected, and checked

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            (blocked if msg.text.startswith("Blocked script execution in 'about:srcdoc'") else errors).append(msg.text)

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", on_console)
    page.rv_blocked_scripts = blocked
    page.goto(f"{rv_server}/harness/harness.html")
    page.wait_for_function("window.rvReady === true")
    yield page
    context.close()
    assert not errors, f"browser errors: {errors}"


@pytest.fixture(scope="session")
def rv_artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def _load_fixture(name: str, *, shift_to_now: bool = True) -> Any:
    """Load a JSON fixture; move its timestamps so the run started 20 s ago (live durations stay small)."""
    data = json.loads((HERE / "fixtures" / name).read_text())
    if not shift_to_now:
        return data
    steps = data["steps"] if isinstance(data, dict) else []
    base = data.get("started_at") if isinstance(data, dict) else None
    if base is None:
        return data
    delta = time.time() - 20 - base
    for obj in [data, *steps]:
        for key in ("created_at", "started_at", "finished_at"):
            if obj.get(key) is not None:
                obj[key] += delta
    return data


@pytest.fixture(scope="session")
def rv_fixture() -> Any:
    """``rv_fixture(name)`` loads fixtures/<name> with timestamps moved to now."""
    return _load_fixture


@pytest.fixture(scope="session")
def rv_bundle() -> str:
    """Inline run_view.js and its siblings into one ES module, as the Python widget sends it as ``_esm``.

    Siblings come first in dependency order with their relative imports and ``export`` keywords
    dropped; run_view.js comes last with its exports kept.
    """
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for _names, dep in _IMPORT.findall((WIDGETS / name).read_text()):
            visit(dep)
        order.append(name)

    visit("run_view.js")
    parts = []
    for name in order:
        text = _IMPORT.sub("", (WIDGETS / name).read_text())
        if name != "run_view.js":
            text = re.sub(r"^export (?=(function|class|const|let)\b)", "", text, flags=re.M)
        parts.append(f"// ---- {name}\n{text}")
    return "\n".join(parts)
