"""The NI's AXI shell (:class:`rtl.axi.NetworkInterfaceAXI`) under its cocotb testbench
(tb/axi_tests.py) on both simulators: two nodes whose every port is driven by cocotbext-axi, the
reference NI as scoreboard."""

import pytest

from tb.runner import SIMULATORS, build, run
from tb.testbenches import get_testbench

#: A small MessageBuffer (2 RX lines kept: write-backs go out on the AXI master all the time)
#: and lock table, so that the two nodes build fast.
PARAMS = dict(lines=16, tx_lines=4, rx_lines=2, lock_entries=8, lock_waiters=8)
#: Payload lengths per mode and path: 8, 64 and 200 B; Verilator adds 2 KiB.
LENGTHS = {"icarus": 3, "verilator": 4}


@pytest.mark.parametrize("sim", SIMULATORS)
def test_axi_shell(sim, seed):
    """Messages in every mode, PIO and DMA, both ways, against the reference NI; SLVERR for what
    the shell and the NI refuse."""
    bench = get_testbench("ni_axi")
    result = run(build(bench.component, PARAMS, sim=sim), bench.module, seed=seed,
                 options={"lengths": LENGTHS[sim]}, label=f"pytest-{seed}")
    assert result.passed, f"seed {seed}: {result.message} {result.tests}; log {result.log}"
    assert set(result.tests) == {"messages_in_every_mode", "bus_errors"}
    figures = result.results["messages_in_every_mode"]
    assert figures["mismatches"] == 0 and result.results["bus_errors"]["mismatches"] == 0
    assert figures["messages"] == 5 * 2 * LENGTHS[sim]
    # The core's cache held lines that later messages overwrote: dirty coherence answers; and
    # the small buffer wrote lines back through the AXI master.
    assert figures["dirty_answers"] > 0 and figures["memory_writes"] > 0, figures
