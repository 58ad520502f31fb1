"""Python's start in the real page: a first visit restores the site's own memory snapshot (made at
build time) and saves it, a repeat visit restores the saved one (body[data-timings] says which start
was taken, and which snapshot), and every start generates the same text as a normal start; a new
build, a damaged snapshot, a site snapshot that fails to download or a storage quota too small for
the snapshot fall back to the next start, and the page works."""

import hashlib
import io
import json
import zipfile

import pytest
from conftest import _OverlayHandler

PARAMS = dict(max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=77)
SNAPSHOT_KEYS = """caches.open('mamba-wasm-v1').then((c) => c.keys())
    .then((keys) => keys.map((r) => r.url).filter((u) => u.includes('python-snapshot')))"""


BUILT_SNAPSHOT = "**/py/built-snapshot.bin.gz"


def start_of(site):
    """(start, which snapshot, note): ("snapshot", "built" | "saved", ...) or ("normal", None, why)."""
    timings = json.loads(site.page.get_attribute("body", "data-timings"))
    return timings.get("start"), timings.get("snapshot"), timings.get("start_note", "")


def wait_until_saved(site):
    """The snapshot is stored in the background after ready: wait for its Cache API entry."""
    site.wait_until(f"{SNAPSHOT_KEYS}.then((keys) => keys.length === 1)")


@pytest.fixture
def visited(new_site):
    """A first visit that reached ready from the site's snapshot, generated, and saved the snapshot;
    with that text."""
    site = new_site()
    site.open()
    assert site.state() == "ready", site.text("error")
    assert start_of(site) == ("snapshot", "built", ""), site.console[-10:]
    text = site.generate("Snap", **PARAMS)
    wait_until_saved(site)
    return site, text


def test_repeat_visit_restores_the_snapshot_and_generates_the_same_text(visited, timings):
    site, text = visited
    seconds = site.open()
    assert site.state() == "ready", site.text("error")
    assert start_of(site) == ("snapshot", "saved", ""), site.console[-10:]
    assert site.generate("Snap", **PARAMS) == text and len(text) > 20
    timings["time to ready, repeat visit from the snapshot"] = f"{seconds:.2f} s ({site.phases()})"


def test_damaged_snapshot_falls_back_to_the_normal_start(visited):
    site, text = visited
    site.page.evaluate(f"""{SNAPSHOT_KEYS}.then(async ([key]) => {{
        const cache = await caches.open('mamba-wasm-v1');
        const bytes = new Uint8Array(await (await cache.match(key)).arrayBuffer());
        await cache.put(key, new Response(bytes.slice(0, bytes.length >> 1)));
    }})""")
    site.open()
    assert site.state() == "ready", site.text("error")
    start, snapshot, note = start_of(site)
    assert (start, snapshot) == ("snapshot", "built"), note
    assert "snapshot not used" in note and "corrupt or truncated" in note, note
    assert site.generate("Snap", **PARAMS) == text


def rebuilt_package(dist):
    """The site's package wheel with one more file, and a manifest naming it: a new build."""
    manifest = json.loads((dist / "manifest.json").read_text())
    wheel = dist / manifest["package"]
    out = io.BytesIO()
    with zipfile.ZipFile(wheel) as old, zipfile.ZipFile(out, "w") as new:
        for item in old.infolist():
            new.writestr(item, old.read(item))
        new.writestr("mamba_wasm/_rebuilt.txt", "a new build\n")
    data = out.getvalue()
    manifest["files"][manifest["package"]] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return {"/" + manifest["package"]: data, "/manifest.json": json.dumps(manifest).encode()}, manifest


def test_new_build_does_not_restore_the_old_snapshot(visited, dist):
    """Neither the saved snapshot nor the site's (the manifest's made_from names the old package)."""
    site, text = visited
    replaced, manifest = rebuilt_package(dist)
    _OverlayHandler.replaced.update(replaced)
    try:
        site.open()
        assert site.state() == "ready", site.text("error")
        assert start_of(site) == ("normal", None, "no snapshot saved yet")
        assert site.generate("Snap", **PARAMS) == text
        wait_until_saved(site)  # the new build's snapshot replaces the old one
        [key] = site.page.evaluate(SNAPSHOT_KEYS)
        assert key.endswith("package=" + manifest["files"][manifest["package"]]["sha256"]), key
    finally:
        for path in replaced:
            _OverlayHandler.replaced.pop(path)


def test_storage_quota_too_small_for_the_snapshot_keeps_the_page_working(new_site):
    site = new_site()
    cdp = site.context.new_cdp_session(site.page)
    # Room for the runtime, the site's snapshot and model files (about 30 MB), not for the snapshot
    # the visit saves (about 45 MB).
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": site.base_url.rstrip("/"), "quotaSize": 40_000_000})
    site.open()
    assert site.state() == "ready", site.text("error")
    text = site.generate("Snap", **PARAMS)
    site.page.wait_for_timeout(3000)  # let the background store fail
    assert any("snapshot not saved: storage quota" in line for line in site.console), site.console[-10:]
    site.open()
    assert site.state() == "ready", site.text("error")
    assert start_of(site) == ("snapshot", "built", "")
    assert site.generate("Snap", **PARAMS) == text


@pytest.mark.parametrize("answer", [
    dict(status=503, body="busy"),  # the download fails
    dict(status=200, body=b"\x1f\x8b not the file the manifest names"),  # sha256 differs
])
def test_site_snapshot_failing_falls_back_to_the_normal_start_with_the_same_text(visited, new_site, answer):
    """A first visit whose site snapshot fails starts Python normally, generates the text the site's
    snapshot gave, and saves a snapshot of its own for the next visit."""
    _, text = visited
    site = new_site()
    site.context.route(BUILT_SNAPSHOT, lambda route: route.fulfill(**answer))
    site.open()
    assert site.state() == "ready", site.text("error")
    start, snapshot, note = start_of(site)
    assert (start, snapshot) == ("normal", None), note
    assert "the site's snapshot not used" in note and "built-snapshot.bin.gz" in note, note
    assert site.generate("Snap", **PARAMS) == text
    wait_until_saved(site)
    site.open()
    assert site.state() == "ready", site.text("error")
    assert start_of(site) == ("snapshot", "saved", "")
    assert site.generate("Snap", **PARAMS) == text
