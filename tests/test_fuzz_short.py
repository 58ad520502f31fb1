"""A few seconds of the fuzz run (scripts/fuzz.py), deterministic, in the default suite.

Each target gets the same fixed sequence of hypothesis examples on every run (derandomize), so a
failure here reproduces; the 60-second coverage-guided run is `python3 scripts/fuzz.py --seconds 60`
(docs/RELIABILITY.md). Only MambaWasmError subclasses may escape a target.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import fuzz  # noqa: E402

EXAMPLES = {"session": 100, "tokenizer": 150, "checkpoint": 200}  # the slower targets get fewer


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in models with huge (finite) weights
@pytest.mark.parametrize("target", list(fuzz.TARGETS))
def test_fuzz_target_short(target):
    fuzz.fixtures()

    @settings(max_examples=EXAMPLES.get(target, 300), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=512))
    def check(data):
        with fuzz._time_limit(10):
            fuzz.run_one(data, (target,))

    check()


def test_choices_read_exhausted_input_as_the_first_option():
    c = fuzz.Choices(b"\x05")
    assert c.int(0, 9) == 5 and c.int(3, 9) == 3 and c.pick("abc") == "a" and c.raw(8) == b""
