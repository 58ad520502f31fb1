"""The page's transcript layout cost, in headless Chromium: ms per token over a long generation of
the site's tiny-random model (its text is one long paragraph, the worst case for layout), once with
the transcript shown, once hidden (display: none) and once shown with the token view on (an
element per token, records with every token message), in one run. A cost that grows with the text
shows as the shown column rising window by window while the hidden one stays flat.

    .venv/bin/python -m bench.transcript [--tokens 20000]
"""

import argparse

import build  # build.py at the repository root: `python -m bench.transcript` runs from there
import provision

from .browser import BenchSite, Tab

WINDOWS = 10


def ms_per_token(messages):
    """[(first token, ms per token)] in WINDOWS equal windows, from the token messages' arrivals."""
    points = [(m["n_generated"], m["at"]) for m in messages if m["type"] in ("token", "done")]
    total = points[-1][0]
    out = []
    for w in range(WINDOWS):
        lo, hi = total * w // WINDOWS, total * (w + 1) // WINDOWS
        start = max((p for p in points if p[0] <= lo), default=points[0])
        end = min((p for p in points if p[0] >= hi), default=points[-1])
        out.append((lo, (end[1] - start[1]) / max(1, end[0] - start[0])))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    args = parser.parse_args()
    build.build(quiet=True)
    from playwright.sync_api import sync_playwright

    site = BenchSite(build, {})
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=provision.find_chromium(), args=provision.CHROMIUM_FLAGS)
            tab = Tab(browser.new_context(viewport={"width": 1280, "height": 800}), site.url)
            tab.open("tiny-random")
            columns = {}
            for mode in ("shown", "hidden", "tokens"):
                tab.page.evaluate("(hide) => { document.querySelector('.transcript').style.display ="
                                  " hide ? 'none' : ''; }", mode == "hidden")
                if mode == "tokens":  # the token view: an element per token, coloured by probability
                    tab.page.check("[data-testid=token-view]")
                    tab.page.check("[data-testid=colour-tokens]")
                columns[mode] = ms_per_token(tab.generate("The ", args.tokens, inspect=mode == "tokens"))
            browser.close()
    finally:
        site.close()
    print(f"ms per token, tiny-random, {args.tokens} tokens, transcript shown vs hidden (display: none), "
          "and shown with the token view on")
    print("| from token | shown | hidden | shown / hidden | token view | token view / hidden |")
    print("|---:|---:|---:|---:|---:|---:|")
    for (first, shown), (_, hidden), (_, tokens) in zip(columns["shown"], columns["hidden"], columns["tokens"]):
        print(f"| {first:,} | {shown:.3f} | {hidden:.3f} | {shown / hidden:.2f} | {tokens:.3f} | {tokens / hidden:.2f} |")


if __name__ == "__main__":
    main()
