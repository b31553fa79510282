"""The RX engine's Verilog with damaged links on both simulators (tb/rxengine_tests.py): the
DESIGN §7 row that the system testbench cannot make, a corrupted or truncated message."""

import pytest

from tb.runner import SIMULATORS, build, run
from tb.testbenches import get_testbench


@pytest.mark.parametrize("sim", SIMULATORS)
def test_damaged_messages_are_discarded_and_counted(sim, seed):
    bench = get_testbench("rxengine")
    result = run(build(bench.component, {}, sim=sim), bench.module, seed=seed,
                 label=f"pytest-{seed}")
    assert result.passed, f"seed {seed}: {result.message}; log {result.log}"
    figures = result.results["damaged_links"]
    assert figures["kinds"].get("crc", 0) and figures["kinds"].get("truncated", 0), figures
    assert figures["faults"] > 0 and figures["completions"] > 0
