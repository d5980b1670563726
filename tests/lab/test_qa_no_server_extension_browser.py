"""In real JupyterLab and Chromium: the panel without its server extension says so, in words.

When the frontend loads but Jupyter has no nbpipe server extension (installed in another
environment, not enabled, failed to import), every /nbpipe/api call gets Jupyter's HTML 404 page.
The panel put that page's markup, `<!DOCTYPE HTML> <html> <head> …`, in its status box, its
Pipeline section and its run list. It now says what is wrong and what to do.

Jupyter's answer is the real one: the page this Lab serves for a path nothing handles, given to
the panel's requests in place of the extension's answers (the Lab under test has its extension).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = ["import nbpipe", "@nbpipe.component\ndef one() -> int:\n    return 1", "@nbpipe.pipeline\ndef p():\n    one()"]


def test_a_missing_server_extension_is_said_in_words_not_as_html(start_lab: Any, lab_browser: Any,
                                                                 lab_notebook: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("p.ipynb", CELLS))
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{lab['url']}/nbpipe-not-here/api/status?token={lab['token']}")
    assert missing.value.code == 404
    page404 = missing.value.read().decode()
    assert page404.lstrip().startswith("<!DOCTYPE HTML>")

    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    page.route("**/nbpipe/api/**", lambda route: route.fulfill(status=404, content_type="text/html", body=page404))
    try:
        page.goto(f"{lab['url']}/lab/tree/p.ipynb?token={lab['token']}")
        page.locator(".jp-NotebookPanel:visible").first.wait_for(timeout=90_000)
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel = page.locator("#nbpipe-panel")
        said = "The nbpipe server extension is not loaded in this Jupyter server (404 on /nbpipe/api)."
        expect(panel.locator(".nbp-notebook .nbp-error-message")).to_have_text(said, timeout=60_000)
        expect(panel.locator(".nbp-notebook .nbp-error-hint")).to_contain_text("jupyter server extension list")
        expect(panel.locator(".nbp-runs-box .nbp-error-message")).to_have_text(said)
        expect(panel.locator(".nbp-runner-down")).to_contain_text(said)
        assert "<" not in panel.inner_text(), panel.inner_text()[:500]
    finally:
        page.close()
