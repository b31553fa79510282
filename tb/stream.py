"""cocotb drivers for :mod:`amaranth.lib.stream` ports, bound by Amaranth's port names.

A stream member ``name`` of a component appears in its Verilog as ``name__payload``,
``name__valid`` and ``name__ready``. Both drivers sample at the rising clock edge (values read right
after :class:`~cocotb.triggers.RisingEdge` are those the flip-flops saw) and sleep while their port
has no work, so an idle port costs no Python per cycle.
"""

import random
from collections import deque

from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "cycle"]


def cycle():
    """Return the number of the latest rising clock edge (simulation time runs 1 ns per cycle)."""
    return int(get_sim_time("ns"))


class StreamSource:
    """Drive payloads into a stream sink port of the design.

    Parameters
    ----------
    dut : cocotb handle
    name : str
        Stream member name, e.g. ``"inputs__0"``.
    clock : cocotb handle
    on_accept : callable, optional
        ``on_accept(payload, offered_cycle, accepted_cycle)`` after each transfer; cycles are
        numbers of rising edges, ``offered_cycle`` the first edge at which the payload was ready.
    idle_percent : int
        Chance, per cycle, of holding ``valid`` low although a payload is ready (bubbles).
    rng : :class:`random.Random`, optional
        Source of the bubbles; required when ``idle_percent`` is not zero.
    """

    def __init__(self, dut, name, clock, *, on_accept=None, idle_percent=0, rng=None):
        self._payload = getattr(dut, f"{name}__payload")
        self._valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._clock = clock
        self._on_accept = on_accept
        self._idle = idle_percent / 100
        self._rng = rng or random.Random(0)
        self._queue = deque()
        self._not_empty = Event()
        self._empty = Event()
        self._empty.set()
        self._valid.value = 0

    def send(self, payloads):
        """Queue ``payloads`` (integers) for transmission."""
        self._queue.extend(payloads)
        if self._queue:
            self._empty.clear()
            self._not_empty.set()

    def __len__(self):
        return len(self._queue)

    async def wait_empty(self):
        """Return once every queued payload has been taken."""
        await self._empty.wait()

    async def run(self):
        """Driver loop; start it with :func:`cocotb.start_soon`."""
        edge = RisingEdge(self._clock)
        while True:
            if not self._queue:
                self._valid.value = 0
                self._empty.set()
                self._not_empty.clear()
                await self._not_empty.wait()
            offered = cycle() + 1      # the first edge that can take it
            head = self._queue[0]
            self._payload.value = head
            while True:
                show = not self._idle or self._rng.random() >= self._idle
                self._valid.value = show
                await edge
                if show and self._ready.value:
                    break
            self._queue.popleft()
            if self._on_accept is not None:
                self._on_accept(head, offered, cycle())


class StreamSink:
    """Take payloads from a stream source port of the design.

    Parameters
    ----------
    dut, name, clock
        As for :class:`StreamSource`.
    on_receive : callable
        ``on_receive(payload, cycle)`` for each transfer.
    ready_percent : int
        Chance, per cycle, that ``ready`` is high (100: never any backpressure).
    rng : :class:`random.Random`, optional
        Source of the backpressure; required when ``ready_percent`` is below 100.
    """

    def __init__(self, dut, name, clock, *, on_receive, ready_percent=100, rng=None):
        self._payload = getattr(dut, f"{name}__payload")
        self._valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._clock = clock
        self._on_receive = on_receive
        self._ready_chance = ready_percent / 100
        self._rng = rng or random.Random(0)
        self._ready.value = 0

    async def run(self):
        """Monitor loop; start it with :func:`cocotb.start_soon`."""
        edge = RisingEdge(self._clock)
        settled = ReadOnly()
        rising_valid = RisingEdge(self._valid)
        self._ready.value = 1
        while True:
            await edge
            if self._valid.value and self._ready.value:
                self._on_receive(int(self._payload.value), cycle())
            if self._ready_chance < 1:
                self._ready.value = self._rng.random() < self._ready_chance
            await settled
            if not self._valid.value:
                # Nothing offered: sleep until the design raises valid.
                await rising_valid
