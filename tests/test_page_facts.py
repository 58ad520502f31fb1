"""facts.js, which build.py generates for the page and the worker from the package's source, says
what the imported package says: checkpoint file names and the sampling defaults."""

import dataclasses
import importlib.util
import json
import pathlib

from mamba_wasm import SamplingParams, checkpoint, plan, tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _facts():
    spec = importlib.util.spec_from_file_location("mamba_wasm_build", ROOT / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    text = build.page_facts().decode()
    return json.loads(text[text.index("export default ") + len("export default "):].rstrip().rstrip(";"))


def test_facts_match_the_package():
    facts = _facts()
    assert facts["files"] == {"config": checkpoint.CONFIG_FILE, "single": checkpoint.SINGLE_FILE,
                              "index": checkpoint.INDEX_FILE, "tokenizer": plan.TOKENIZER_FILE}
    assert facts["sampling_defaults"] == {f.name: f.default for f in dataclasses.fields(SamplingParams)}
    assert facts["limits"] == {"max_shards": checkpoint.MAX_SHARDS, "header_slack_bytes": checkpoint.HEADER_SLACK_BYTES,
                               "shard_name_pattern": checkpoint.PLAIN_FILE_NAME_PATTERN,
                               "max_tokenizer_bytes": tokenizer.MAX_TOKENIZER_BYTES}


def test_the_page_reads_its_file_names_and_defaults_from_facts():
    """No JavaScript file spells a checkpoint file name or a sampling default itself."""
    for path in (ROOT / "web").glob("*.js"):
        code = path.read_text()
        for name in ("model.safetensors", "model.safetensors.index.json"):
            assert f'"{name}"' not in code, f"{path.name} spells {name}: use facts.js"
