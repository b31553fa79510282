"""The lock table's Verilog under its cocotb testbench (tb/locktable_tests.py) on both
simulators, with the core and OS models of behavioral/ driving it."""

import pytest

from tb.runner import SIMULATORS, build, run
from tb.testbenches import get_testbench

RANDOM = ("random_operations/backpressure=False", "random_operations/backpressure=True")
CORE = ("mutex_contention/oversubscribed=False", "mutex_contention/oversubscribed=True",
        "wait_against_signal/oversubscribed=False", "wait_against_signal/oversubscribed=True")


def run_locktable(sim, params, seed, *, options=None, only=None):
    bench = get_testbench("locktable")
    result = run(build(bench.component, params, sim=sim), bench.module, seed=seed,
                 options=options, label=f"pytest-{seed}", only=only)
    assert result.passed, f"seed {seed}: {result.message} {result.tests}; log {result.log}"
    return result


#: The default table's run: the testbench's 20,000 random operations and 10,000 WAIT/SIGNAL races
#: on Verilator, fewer on Icarus, several times slower.
DEFAULT_RUNS = {"icarus": {"operations": 6000, "interleavings": 3000},
                "verilator": {"operations": 20_000, "interleavings": 10_000}}


@pytest.mark.parametrize("sim", SIMULATORS)
def test_default_table(sim, seed):
    """32 entries: the model agrees on every answer; WAIT/SIGNAL races (:data:`DEFAULT_RUNS`)
    with no lost or spurious wake-up; a SIGNAL wakes a parked thread's first instruction in a
    cycle."""
    result = run_locktable(sim, {}, seed, options=DEFAULT_RUNS[sim])
    assert set(result.tests) == {*RANDOM, *CORE, "rate_and_signal_latency", "wake_latency"}
    for name in (*RANDOM, *CORE):
        assert result.results[name]["mismatches"] == 0, name
    assert (result.results["wait_against_signal/oversubscribed=False"]["interleavings"]
            >= DEFAULT_RUNS[sim]["interleavings"])
    assert result.results["rate_and_signal_latency"]["signal_to_released_cycles"] <= 2
    assert max(result.results["wake_latency"]["signal_to_first_instruction_cycles"]) <= 2


@pytest.mark.parametrize("sim", SIMULATORS)
def test_small_table(sim, seed):
    """4 entries, 3 waiter slots, 2 contexts, a 2-bit count: FULL, held SIGNALs and the OS
    path all the time."""
    result = run_locktable(sim, dict(entries=4, waiters=3, contexts=2, count_bits=2), seed,
                           options={"operations": 5000, "interleavings": 2000})
    assert {*RANDOM, *CORE} <= set(result.tests)
    for name in (*RANDOM, *CORE):
        assert result.results[name]["mismatches"] == 0, name
