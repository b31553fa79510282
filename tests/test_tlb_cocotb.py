"""The NI TLB's Verilog under its cocotb testbench (tb/tlb_tests.py) on both simulators."""

import pytest

from tb.runner import SIMULATORS, build, run
from tb.testbenches import get_testbench

CONFIGS = [dict(), dict(entries=8, asid_bits=3)]


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items())
                         or "default")
def test_tlb_testbench(sim, params, seed):
    bench = get_testbench("tlb")
    result = run(build(bench.component, params, sim=sim), bench.module, seed=seed,
                 label=f"pytest-{seed}")
    assert result.passed, f"seed {seed}: {result.message} {result.tests}; log {result.log}"
    assert set(result.tests) == {"random_sequences/backpressure=False",
                                 "random_sequences/backpressure=True",
                                 "rate_and_latency", "replacement_when_full"}
    for name in ("random_sequences/backpressure=False", "random_sequences/backpressure=True"):
        answers = result.results[name]["answers"]
        assert result.results[name]["mismatches"] == 0
        assert all(answers[kind] for kind in ("HIT", "MISS", "PERMISSION_FAULT", "KEY_FAULT"))
