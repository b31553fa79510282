"""What every component testbench shares: the run's parameters, clock, reset, one stream port
group, and the run's speed; and the seed and knobs of each test."""

import random
import time
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .runner import CLOCK_PERIOD_NS, testbench_params
from .stream import StreamPorts, cycle
from .testbenches import TESTBENCHES

__all__ = ["ComponentTB", "OrderedOutputs", "knobs", "seed_for"]


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

    @property
    def outstanding(self):
        """Inputs queued or results expected and not yet seen (subclasses say which)."""
        return 0

    async def drain(self, timeout_cycles):
        """Wait until :attr:`outstanding` is zero; fail after ``timeout_cycles`` cycles."""
        await self.wait_until(lambda: not self.outstanding, timeout_cycles,
                              lambda: f"{self.outstanding} inputs or results outstanding")

    async def wait_until(self, predicate, timeout_cycles, what, *, progress=None,
                         stall_cycles=None):
        """Wait until ``predicate()``, checking every few cycles; after ``timeout_cycles`` fail
        with ``what()`` and the scoreboard's first mismatch, if any (a mismatch withholds the
        result from the models that wait for it, so a run that stalls often began with one).
        With ``progress`` (a function whose value changes as the run makes progress), fail as
        well once its value has not changed for ``stall_cycles``: a stall is reported when it
        is one, not at the deadline."""
        deadline = cycle() + timeout_cycles
        step = 1 if timeout_cycles < 1000 else 16
        mark, since = None, cycle()
        while not predicate():
            now = cycle()
            failure = None
            if progress is not None:
                value = progress()
                if value != mark:
                    mark, since = value, now
                elif now - since >= stall_cycles:
                    failure = f"no progress for {now - since} cycles (since cycle {since})"
            if now >= deadline:
                failure = f"after {timeout_cycles} cycles"
            if failure is not None:
                mismatches = getattr(self, "mismatches", [])
                raise AssertionError(f"{self.dut._name}: {failure}, {what()}"
                                     + (f"; first mismatch: {mismatches[0]}" if mismatches else ""))
            await ClockCycles(self.dut.clk, step)

    def speed(self):
        """Return the simulator, cycles since :meth:`start`, wall time and cycles per second."""
        cycles = cycle() - self.start_cycle
        wall_s = time.perf_counter() - self._start_wall
        return {"sim": self.sim, "cycles": cycles, "wall_s": round(wall_s, 3),
                "cycles_per_s": round(cycles / wall_s) if wall_s else 0}


class OrderedOutputs:
    """The payloads a reference model expects on a design's output ports, each port checked in
    order as the design gives them.

    Parameters
    ----------
    names : iterable of str
        The output ports.
    mismatches : list
        Where a mismatch is described (shared with the testbench's other checks).
    """

    def __init__(self, names, mismatches):
        self._expected = {name: deque() for name in names}
        self._mismatches = mismatches
        self.counts = dict.fromkeys(self._expected, 0)

    def __len__(self):
        return sum(map(len, self._expected.values()))

    def expect(self, name, fields):
        """Queue ``fields`` (a dict, as :meth:`rtl.layouts.Codec.unpack` gives) on ``name``."""
        self._expected[name].append(fields)

    def receiver(self, testbench, name, codec):
        """Return the ``on_receive`` of a sink on port ``name``: unpack through ``codec``,
        check, and hand an expected payload's fields to ``testbench.on_<name>`` if it is set."""
        def receive(payload, when):
            fields = codec.unpack(payload)
            callback = getattr(testbench, f"on_{name}")
            if self.check(name, fields, when) and callback:
                callback(fields, when)
        return receive

    def check(self, name, fields, when):
        """Check what port ``name`` gave at edge ``when``; return whether it was expected."""
        self.counts[name] += 1
        if not self._expected[name]:
            self._mismatches.append(f"{name} {fields} at {when}: none expected")
            return False
        expected = self._expected[name].popleft()
        if fields != expected:
            self._mismatches.append(f"{name} at {when}: got {fields}, expected {expected}")
            return False
        return True
