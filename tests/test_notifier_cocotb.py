"""The Notifier's Verilog under its cocotb testbench (tb/notifier_tests.py) on both simulators,
with the core and OS models of behavioral/ taking its events."""

import pytest

from tb.runner import SIMULATORS, build, run
from tb.testbenches import get_testbench

TESTS = {"random_arrivals/backpressure=False", "random_arrivals/backpressure=True",
         "branch_into_computation", "spawn_paths", "not_resident", "notification_latency"}


def run_notifier(sim, params, seed, *, options=None):
    bench = get_testbench("notifier")
    result = run(build(bench.component, params, sim=sim), bench.module, seed=seed,
                 options=options, label=f"pytest-{seed}")
    assert result.passed, f"seed {seed}: {result.message} {result.tests}; log {result.log}"
    assert set(result.tests) == TESTS
    assert all(figures["mismatches"] == 0 for figures in result.results.values())
    return result


@pytest.mark.parametrize("sim", SIMULATORS)
def test_default_notifier(sim, seed):
    """8 endpoints, 4 contexts: every path exactly once; BRANCH and SPAWN reach the first
    handler instruction within 10 cycles of the completion."""
    result = run_notifier(sim, {}, seed)
    latency = result.results["notification_latency"]["latency_cycles"]
    assert max(max(values) for values in latency.values()) <= 10, latency


@pytest.mark.parametrize("sim", SIMULATORS)
def test_small_notifier(sim, seed):
    """3 endpoints, 2 contexts, a queue of 1: overflows and OS hand-offs all the time."""
    run_notifier(sim, dict(endpoints=3, contexts=2, queue_depth=1), seed,
                 options={"arrivals": 2000})
