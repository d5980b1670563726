"""In real JupyterLab and Chromium: the Endpoints page with no endpoint shows no test form.

With no endpoint (a new user, or after deleting the last one) the page showed the test form under
"No endpoints yet": an empty Version box, Send, Roll back and Delete buttons that do nothing (the
form's flex layout beat its `hidden` attribute), and after a delete still "Test adder". Reload
lived in that form, so hiding it must not take Reload away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_dashboard_browser import palette

pytestmark = pytest.mark.slow


def doubling(model, x):
    return x * model


def test_no_endpoint_no_test_form_and_reload_finds_a_new_one(start_lab: Any, lab_browser: Any) -> None:
    from playwright.sync_api import expect

    from nbpipe import Client
    from nbpipe.serving import serve

    lab = start_lab(Path(__file__).parent / "notebooks" / "tiny.ipynb")
    page = lab_browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{lab['url']}/lab?token={lab['token']}")
    page.locator(".jp-Launcher").first.wait_for(timeout=90_000)
    palette(page, "nbpipe: Endpoints", "nbpipe:open-endpoints")

    empty = page.locator(".nbp-endpoints-empty")
    form = page.locator(".nbp-endpoints-form")
    expect(empty).to_have_text(
        "No endpoints yet: deploy one with nbpipe.serve(...) or a deploy step in a pipeline.", timeout=30_000
    )
    expect(form).to_be_hidden()
    table = page.locator(".nbp-endpoints-table").bounding_box()
    cell = empty.bounding_box()
    assert table and cell and cell["width"] > table["width"] - 4, (cell, table)  # the message spans the table

    serve(2.0, predict=doubling, name="doubler", runner=Client())  # the Lab's embedded runner
    page.locator(".nbp-endpoints-reload").click()
    row = page.locator('.nbp-endpoints-row[data-endpoint="doubler"]')
    expect(row).to_contain_text("ready", timeout=60_000)
    expect(form).to_be_visible()
    expect(page.locator(".nbp-endpoints-heading")).to_have_text("Test doubler")

    page.locator(".nbp-endpoints-delete").click()
    dialog = page.locator(".jp-Dialog")  # Lab's own dialog (it was the browser's confirm())
    expect(dialog.locator(".jp-Dialog-body")).to_have_text("Delete endpoint doubler and all its versions? "
                                                           "Requests to it fail from then on.")
    dialog.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0, timeout=60_000)
    expect(empty).to_be_visible()
    expect(form).to_be_hidden()  # not "Test doubler" for an endpoint that is gone
    page.close()
