"""The baseline of co-simulation speed: a bare cocotb clock loop with no other Python work.

Runs on any design with a ``clk`` input; ``tb.bench`` compares the testbenches against it.
"""

import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from .runner import CLOCK_PERIOD_NS, record_result, testbench_params


@cocotb.test()
async def clock_loop(dut):
    """Await every rising edge for ``cycles`` cycles."""
    _, options, sim = testbench_params()
    cycles = options.get("cycles", 100_000)
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    edge = RisingEdge(dut.clk)
    await edge
    start = time.perf_counter()
    for _ in range(cycles):
        await edge
    wall_s = time.perf_counter() - start
    record_result("clock_loop", {"sim": sim, "cycles": cycles, "wall_s": round(wall_s, 3),
                                 "cycles_per_s": round(cycles / wall_s)})
