"""The message buffer's Verilog under its cocotb testbench (tb/msgbuf_tests.py) on both
simulators, with the hierarchy of behavioral/memory.py on its ports."""

import pytest

from tb.runner import SIMULATORS, build, run
from tb.testbenches import get_testbench

RANDOM = ("random_operations/backpressure=False", "random_operations/backpressure=True")


def run_msgbuf(sim, params, seed, *, options=None, only=None):
    bench = get_testbench("msgbuf")
    result = run(build(bench.component, params, sim=sim), bench.module, seed=seed,
                 options=options, label=f"pytest-{seed}", only=only)
    assert result.passed, f"seed {seed}: {result.message} {result.tests}; log {result.log}"
    return result


#: Random operations of the default buffer's run: the testbench's 100,000 on Verilator, fewer on
#: Icarus, several times slower.
DEFAULT_OPERATIONS = {"icarus": 30_000, "verilator": 100_000}


@pytest.mark.parametrize("sim", SIMULATORS)
def test_default_buffer(sim, seed):
    """64 lines: random operations (:data:`DEFAULT_OPERATIONS`) with no stale read, a line per 8
    cycles, and no DRAM read for a message read out of the buffer."""
    operations = DEFAULT_OPERATIONS[sim]
    result = run_msgbuf(sim, {}, seed, options={"operations": operations})
    assert set(result.tests) == {*RANDOM, "fill_rate", "message_cache_effect"}
    assert sum(result.results[name]["operations"] for name in RANDOM) >= operations
    for name in RANDOM:
        assert result.results[name]["mismatches"] == 0
        assert result.results[name]["counts"].get("stale_reads", 0) == 0
    assert result.results["fill_rate"]["cycles_per_line"] <= 8
    rows = result.results["message_cache_effect"]["rows"]
    assert all(row["read_dram_reads"] == 0 for row in rows)


@pytest.mark.parametrize("sim", SIMULATORS)
def test_small_buffer(sim, seed):
    """8 lines, 3 kept: announcements wait for write-backs all the time."""
    result = run_msgbuf(sim, dict(lines=8, tx_lines=2, rx_lines=3), seed,
                        options={"operations": 20_000}, only="random_operations")
    assert set(result.tests) == set(RANDOM)
    assert all(result.results[name]["mismatches"] == 0 for name in RANDOM)


@pytest.mark.parametrize("sim", SIMULATORS)
def test_small_buffer_probe_after_retag(sim):
    """Seed 1596823825 makes a probe wait while the line that last held its address, free since,
    is given to another address, with the address held in a second line: the probe once matched
    both lines and read the wrong one."""
    result = run_msgbuf(sim, dict(lines=8, tx_lines=2, rx_lines=3), 1596823825,
                        options={"operations": 20_000}, only="random_operations/backpressure=F")
    assert result.results["random_operations/backpressure=False"]["mismatches"] == 0


@pytest.mark.parametrize("sim", SIMULATORS)
def test_small_buffer_fill_behind_a_deferred_request(sim):
    """Seed 267757981 makes a partial fill end while its line's coherence request waits for a
    core miss whose probe was taken before it: the miss reads the line as it was, the fill takes
    effect once the caches give the line up (the scoreboard once took it at the request)."""
    result = run_msgbuf(sim, dict(lines=8, tx_lines=2, rx_lines=3), 267757981,
                        options={"operations": 20_000}, only="random_operations/backpressure=T")
    assert result.results["random_operations/backpressure=True"]["mismatches"] == 0


@pytest.mark.parametrize("sim", SIMULATORS)
def test_buffer_off(sim, seed):
    """rx_lines=0: no stale read, every arriving line goes to memory at a line per 8 cycles, and
    reading a message of k lines costs k DRAM reads."""
    result = run_msgbuf(sim, dict(rx_lines=0), seed,
                        options={"operations": 10_000, "max_message_lines": 8})
    assert set(result.tests) == {*RANDOM, "fill_rate", "message_cache_effect"}
    assert result.results["fill_rate"]["cycles_per_line"] <= 8
    for row in result.results["message_cache_effect"]["rows"]:
        assert (row["read_dram_reads"], row["dram_writes"]) == (row["k"], row["k"]), row
