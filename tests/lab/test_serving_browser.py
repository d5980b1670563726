"""The Endpoints page in a real JupyterLab in Debian's Chromium: an endpoint deployed with
``nbpipe.serve`` to the Lab's own embedded runner shows up; a test request returns the model's
answer; a bad one shows the predict function's error; another version answers when chosen; a
rollback changes what is served. Waits are on states in the page. Screenshot in test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_dashboard_browser import ARTIFACTS, palette

pytestmark = pytest.mark.slow


def summing(model, x):
    if x.shape[-1] != 2:
        raise ValueError(f"expected 2 features, got {x.shape[-1]}")
    return x.sum(axis=-1) * model


def test_endpoints_page_test_request_and_rollback(start_lab: Any, lab_browser: Any) -> None:
    from playwright.sync_api import expect

    from nbpipe import Client
    from nbpipe.serving import serve

    ARTIFACTS.mkdir(exist_ok=True)
    lab = start_lab(Path(__file__).parent / "notebooks" / "tiny.ipynb")
    client = Client()  # the Lab's embedded runner (same NBPIPE_HOME)
    serve(10.0, predict=summing, name="adder", runner=client)
    serve(100.0, predict=summing, name="adder", runner=client)

    page = lab_browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab['url']}/lab?token={lab['token']}")
    page.locator(".jp-Launcher").first.wait_for(timeout=90_000)
    palette(page, "nbpipe: Endpoints", "nbpipe:open-endpoints")

    row = page.locator('.nbp-endpoints-row[data-endpoint="adder"]')
    expect(row).to_be_visible(timeout=30_000)
    expect(row.locator("td").nth(1)).to_have_text("2")
    expect(row.locator("td").nth(2)).to_have_text("1, 2")
    expect(row).to_contain_text("ready")
    row.click()

    box = page.locator(".nbp-endpoints-input")
    out = page.locator(".nbp-endpoints-output")
    box.fill("[[1, 2], [3, 4]]")
    page.locator(".nbp-endpoints-send").click()
    expect(out).to_contain_text("adder version 2")
    expect(out).to_contain_text("output-0 [2] FP64: [300,700]")

    box.fill("[[1, 2, 3]]")
    page.locator(".nbp-endpoints-send").click()
    expect(out).to_contain_text("ValueError: expected 2 features, got 3")
    expect(out).to_have_class("nbp-endpoints-output nbp-mod-error")

    page.locator(".nbp-endpoints-form select").select_option("1")
    box.fill("[[1, 2]]")
    page.locator(".nbp-endpoints-send").click()
    expect(out).to_contain_text("adder version 1")
    expect(out).to_contain_text("[30]")
    page.screenshot(path=str(ARTIFACTS / "endpoints-page.png"))

    page.locator(".nbp-endpoints-rollback").click()
    expect(row.locator("td").nth(1)).to_have_text("1")
    assert client._request("GET", "/api/v1/endpoints/adder").json()["default_version"] == "1"
    assert errors == []
