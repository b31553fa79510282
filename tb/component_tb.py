"""What every component testbench shares: the run's parameters, clock, reset, one stream port
group, and the run's speed; and the seed and knobs of each test."""

import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .runner import CLOCK_PERIOD_NS, testbench_params
from .stream import StreamPorts, cycle
from .testbenches import TESTBENCHES

__all__ = ["ComponentTB", "knobs", "seed_for"]


def knobs(testbench):
    """Return the knobs of the running test: the defaults of ``testbench`` (a name in
    :data:`tb.testbenches.TESTBENCHES`) overridden by the run's ``--param`` values."""
    _, options, _ = testbench_params()
    return {**TESTBENCHES[testbench].options, **options}


def seed_for(name):
    """Log the run's seed and return the seed of test ``name`` derived from it."""
    seed = cocotb.RANDOM_SEED
    cocotb.log.info("seed %d (replay with --seed %d)", seed, seed)
    return f"{seed}-{name}"


class ComponentTB:
    """Base of the component testbenches.

    Attributes
    ----------
    dut : cocotb handle of the top module
    params : dict
        The component's elaboration parameters.
    sim : str
        The simulator.
    rng : :class:`random.Random`
        Seeded from ``seed``.
    ports : :class:`tb.stream.StreamPorts`
        Where subclasses add their drivers.
    """

    def __init__(self, dut, *, seed):
        self.params, _, self.sim = testbench_params()
        self.dut = dut
        self.rng = random.Random(seed)
        self.ports = StreamPorts(dut.clk)
        self.start_cycle = 0
        self._start_wall = None

    async def start(self):
        """Start the clock, reset the design for two cycles and start the drivers."""
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        cocotb.start_soon(self.ports.run())
        await RisingEdge(self.dut.clk)
        self.start_cycle = cycle()
        self._start_wall = time.perf_counter()

    def speed(self):
        """Return the simulator, cycles since :meth:`start`, wall time and cycles per second."""
        cycles = cycle() - self.start_cycle
        wall_s = time.perf_counter() - self._start_wall
        return {"sim": self.sim, "cycles": cycles, "wall_s": round(wall_s, 3),
                "cycles_per_s": round(cycles / wall_s) if wall_s else 0}
