"""web/snapshot-start.js in real Chromium: a repeat visit starts Python from the memory snapshot the
first visit saved (NumPy and mamba_wasm already imported) and generates the same text; a new build,
a damaged entry or a full storage quota fall back to the normal start and still work.

The module is driven by a small test page (tests/e2e/snapshot_page/), mounted in front of dist/, so
its worker loads the real Pyodide, NumPy wheel, package wheel and demo model of the built site.
"""

import json
import pathlib

import pytest
from conftest import Site

PAGE = pathlib.Path(__file__).parent / "snapshot_page"
REQUEST = {"prompt": "ROMEO.", "seed": 11}
START_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def page_url(mount):
    return mount("snapshot-page", {p.name: p.read_bytes() for p in PAGE.iterdir()})


def run_start(site, **damage):
    """One worker start on the test page; what it reports (raises with the worker's error)."""
    site.page.set_default_timeout(START_TIMEOUT_MS)
    result = site.page.evaluate("(request) => window.runStart(request)", {**REQUEST, **damage})
    assert "error" not in result, result.get("error")
    return result


@pytest.fixture(scope="module")
def first_and_second(browser, page_url, timings):
    """A first visit (normal start, snapshot saved) and a second one in the same profile."""
    site = Site(browser, page_url)
    site.page.goto(page_url + "index.html")
    first = run_start(site)
    second = run_start(site)
    timings["snapshot start: first visit"] = f"{first['readyMs'] / 1000:.2f} s {json.dumps(first['timings'])}"
    timings["snapshot start: second visit"] = f"{second['readyMs'] / 1000:.2f} s {json.dumps(second['timings'])}"
    yield site, first, second
    site.context.close()  # not site.close(): this page's worker speaks its own messages, not protocol.js's


def test_second_visit_restores_the_snapshot_and_generates_the_same_text(first_and_second):
    _, first, second = first_and_second
    assert first["start"] == "normal" and first["saving"]["saved"], first
    assert second["start"] == "snapshot", second
    assert second["text"] == first["text"] and len(first["text"]) > 20, (first["text"], second["text"])


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "bases"])
def test_damaged_snapshot_falls_back_to_the_normal_start(first_and_second, damage):
    site, first, _ = first_and_second
    result = run_start(site, damage=damage)
    assert result["start"] == "normal" and "snapshot not used" in result["note"], result
    assert result["text"] == first["text"]
    assert result["saving"]["saved"], result  # a good snapshot replaces the damaged one
    assert run_start(site)["start"] == "snapshot"


def test_new_build_does_not_restore_the_old_snapshot(first_and_second, mount, dist):
    site, first, _ = first_and_second
    manifest = json.loads((dist / "manifest.json").read_text())
    manifest["files"][manifest["package"]]["sha256"] = "0" * 64  # as if the package had changed
    url = mount("snapshot-new-build", {**{p.name: p.read_bytes() for p in PAGE.iterdir()},
                                       "manifest.json": json.dumps(manifest).encode()})
    site.page.goto(url + "index.html")
    result = run_start(site)
    assert result["start"] == "normal" and result["note"] == "no snapshot saved yet", result
    assert result["text"] == first["text"]
    assert len(result["keys"]) == 1 and result["keys"][0].endswith("package=" + "0" * 64), result["keys"]


def test_storage_quota_too_small_for_the_snapshot_keeps_python_working(browser, page_url):
    site = Site(browser, page_url)
    try:
        cdp = site.context.new_cdp_session(site.page)
        cdp.send("Storage.overrideQuotaForOrigin",
                 {"origin": page_url.split("/snapshot-page")[0], "quotaSize": 100_000})
        site.page.goto(page_url + "index.html")
        first = run_start(site)
        assert first["start"] == "normal" and not first["saving"]["saved"], first
        assert "quota" in first["saving"]["note"], first["saving"]
        second = run_start(site)
        assert second["start"] == "normal" and second["text"] == first["text"], second
    finally:
        site.context.close()  # as above: no protocol.js check for this page's worker
