"""The Fabric's Verilog under its cocotb testbench (tb/fabric_tests.py) on both simulators."""

import pytest

from tb.runner import SIMULATORS, build, run
from tb.testbenches import get_testbench

CONFIGS = [
    dict(nodes=2),
    dict(nodes=4),
    dict(nodes=3, link_latency=0, cycles_per_flit=4),
    dict(nodes=16, link_latency=1),
]


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_fabric_testbench(sim, params, seed):
    bench = get_testbench("fabric")
    options = {"messages": 16} if params["nodes"] > 8 else {}
    result = run(build(bench.component, params, sim=sim), bench.module, seed=seed,
                 options=options, label=f"pytest-{seed}")
    assert result.passed, (f"seed {seed}: {result.message} {result.tests}; log {result.log}")
    assert set(result.tests) == {"random_traffic/backpressure=False",
                                 "random_traffic/backpressure=True",
                                 "full_contention", "no_contention_rate",
                                 "woken_in_readonly"}
    assert result.results["random_traffic/backpressure=True"]["mismatches"] == 0
