"""What the package generates natively, for e2e tests that hold the page's text to it."""

from mamba_wasm import Session, from_pretrained


def native_text(path, prompt, params):
    """What the package generates natively for the page's request (same prompt and settings)."""
    model, tokenizer = from_pretrained(str(path))
    session = Session(model, tokenizer)
    session.begin(prompt, **params)
    while not session.prefill_step():
        pass
    text = ""
    while not session.done:
        text += session.advance(1)
    return text
