"""The page<->worker protocol (web/protocol.js) in real Chromium: every message both sides send is
recorded (conftest.RECORD_WORKERS_JS) and checked against it. Every e2e test's page is checked when
it closes (Site.close); this test also drives every kind of request so each message type is seen,
and shows that the check catches an unlisted message or field.
"""


from mamba_wasm.plan import TOKENIZER_FILE

from conftest import ROOT

MODEL = ROOT / "models" / "tiny-random"


def test_every_message_type_is_sent_and_follows_the_protocol(new_site, mount):
    files = {name: (MODEL / name).read_bytes() for name in ("config.json", "model.safetensors", TOKENIZER_FILE)}
    base = mount("protocol", {f"tiny/{name}": data for name, data in files.items()}) + "tiny/"
    site = new_site()
    site.open()
    assert site.state() == "ready", site.text("error")
    site.generate("ROMEO:", wait=False, max_new_tokens=100_000, seed=1)
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=token-count]').textContent) > 3")
    site.stop()
    site.wait_state("ready")
    site.fill(max_new_tokens=5)
    site.page.click("[data-testid=continue]")
    site.wait_state("ready")
    site.generate("", wait=True)  # refused by Python: an error message
    site.page.check("[data-testid=token-view]")  # the inspection views' requests
    site.generate("ROMEO:", max_new_tokens=12, seed=1)
    site.page.hover("[data-testid=output] [data-testid=token] >> nth=3")
    site.page.wait_for_selector("[data-testid=token-popup]:not([hidden])")
    drawn = site.page.get_attribute("[data-testid=output] [data-testid=token] >> nth=3", "data-id")
    site.page.click(f"[data-testid=token-popup] [data-testid=alternative]:not([data-token-id='{drawn}']) >> nth=0")
    site.wait_state("generating", "ready")
    site.wait_state("ready", "error")
    site.page.fill("[data-testid=prompt]", "ROMEO: a text to score")
    site.page.click("[data-testid=score]")
    site.page.wait_for_function("() => document.body.dataset.lastScore && document.body.dataset.state === 'ready'")
    site.page.click("[data-testid=state-view] summary")
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=state-delta]').dataset.tokens) > 0")
    site.page.fill("[data-testid=model-url]", base)
    site.page.click("[data-testid=load-url]")
    site.page.wait_for_selector("[data-testid=cached-models] li[data-base]", timeout=120_000)
    site.wait_state("ready")
    site.page.click("[data-testid=cached-models] li[data-base] [data-testid=cached-delete]")
    site.page.wait_for_selector("[data-testid=cached-models] li.saved-none")
    site.page.fill("[data-testid=model-url]", base.replace("/tiny/", "/missing/"))
    site.page.click("[data-testid=load-url]")
    site.page.wait_for_selector("[data-testid=error]:not([hidden])")
    site.wait_state("ready")

    seen = {(t["direction"], t["type"]) for t in site.traffic()}
    expected = {("to-worker", t) for t in ("load", "generate", "stop", "continue", "saved-list", "saved-delete",
                                           "branch", "score", "probe")}
    expected |= {("to-page", t) for t in ("alive", "progress", "plan", "ready", "started", "token", "done",
                                           "error", "saved", "branched", "scored", "probed")}
    assert expected <= seen, expected - seen
    assert site.protocol_problems() == []


def test_the_check_catches_what_the_protocol_does_not_list(site):
    found = site.page.evaluate("""async () => {
        const { problems, post } = await import(new URL('protocol.js', location.href).href);
        let thrown = null;
        try { post({ postMessage() {} }, 'to-worker', 'generate', { id: 1, prompt: 'x' }); }
        catch (e) { thrown = e.message; }
        return {
            unknownType: problems('to-worker', { type: 'reboot', id: 1 }),
            extraField: problems('to-page', { type: 'cancelled', id: 1, during: 'load', why: 'x' }),
            wrongType: problems('to-worker', { type: 'stop', id: '1' }),
            nested: problems('to-worker', { type: 'generate', id: 1, prompt: 'x',
                params: { max_new_tokens: 1, temperature: 1, top_k: 0, top_p: 1, repetition_penalty: 1,
                          seed: 1, min_p: 0.1 } }),
            thrown,
        };
    }""")
    assert found["unknownType"] == ['to-worker: message type "reboot" is not in the protocol']
    assert found["extraField"] == ["to-page cancelled.why: not in the protocol"]
    assert found["wrongType"] and "stop.id" in found["wrongType"][0]
    assert found["nested"] == ["to-worker generate.params.min_p: not in the protocol"]
    assert "generate.params: missing" in found["thrown"]
