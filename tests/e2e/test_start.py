"""Python's start in the real page: a repeat visit restores the memory snapshot the first visit saved
(body[data-timings] says which start was taken) and generates the same text as the first visit; a
new build, a damaged snapshot or a storage quota too small for it fall back to the normal start, and
the page works."""

import hashlib
import io
import json
import zipfile

import pytest
from conftest import _OverlayHandler

PARAMS = dict(max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=77)
SNAPSHOT_KEYS = """caches.open('mamba-wasm-v1').then((c) => c.keys())
    .then((keys) => keys.map((r) => r.url).filter((u) => u.includes('python-snapshot')))"""


def start_of(site):
    timings = json.loads(site.page.get_attribute("body", "data-timings"))
    return timings.get("start"), timings.get("start_note", "")


def wait_until_saved(site):
    """The snapshot is stored in the background after ready: wait for its Cache API entry."""
    site.page.wait_for_function(f"{SNAPSHOT_KEYS}.then((keys) => keys.length === 1)", timeout=120_000)


@pytest.fixture
def visited(new_site):
    """A first visit that reached ready, generated, and saved its snapshot; with that text."""
    site = new_site()
    site.open()
    assert site.state() == "ready", site.text("error")
    assert start_of(site) == ("normal", "no snapshot saved yet")
    text = site.generate("Snap", **PARAMS)
    wait_until_saved(site)
    return site, text


def test_repeat_visit_restores_the_snapshot_and_generates_the_same_text(visited, timings):
    site, text = visited
    seconds = site.open()
    assert site.state() == "ready", site.text("error")
    assert start_of(site) == ("snapshot", ""), site.console[-10:]
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
    start, note = start_of(site)
    assert start == "normal" and "snapshot not used" in note and "corrupt or truncated" in note, note
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
    site, text = visited
    replaced, manifest = rebuilt_package(dist)
    _OverlayHandler.replaced.update(replaced)
    try:
        site.open()
        assert site.state() == "ready", site.text("error")
        assert start_of(site) == ("normal", "no snapshot saved yet")
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
    # Room for the runtime and model files (about 24 MB), not for the snapshot (about 45 MB).
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": site.base_url.rstrip("/"), "quotaSize": 40_000_000})
    site.open()
    assert site.state() == "ready", site.text("error")
    text = site.generate("Snap", **PARAMS)
    site.page.wait_for_timeout(3000)  # let the background store fail
    assert any("snapshot not saved: storage quota" in line for line in site.console), site.console[-10:]
    site.open()
    assert site.state() == "ready", site.text("error")
    assert start_of(site) == ("normal", "no snapshot saved yet")
    assert site.generate("Snap", **PARAMS) == text
