"""cocotb drivers for :mod:`amaranth.lib.stream` ports, bound by Amaranth's port names.

A stream member ``name`` of a component appears in its Verilog as ``name__payload``,
``name__valid`` and ``name__ready``. Drivers do not run a coroutine each: a :class:`StreamPorts`
group services all of its drivers from one coroutine, waking once per rising clock edge while any
driver has work and not at all while every port is idle. Values read right after the
:class:`~cocotb.triggers.RisingEdge` are those the flip-flops sampled at that edge, so a transfer
is seen exactly when the design sees it.

Sources follow the stream rules: once ``valid`` is raised it stays until the transfer, with the
payload stable. Cycle numbers are rising-edge numbers (simulation time runs 1 ns per cycle).
"""

import random
from collections import deque

from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, First, ReadOnly, RisingEdge

__all__ = ["StreamPorts", "StreamSource", "StreamSink", "StreamMonitor", "cycle", "high"]


def cycle():
    """Return the number of the latest rising clock edge."""
    return int(get_sim_time("ns"))


def high(handle):
    """Return whether the 1-bit signal ``handle`` is 1; raise ValueError if it is X or Z.

    What ``bool(handle.value)`` returns, without making a :class:`cocotb.types.Logic` on the
    way: the group reads every port's ``valid`` and ``ready`` at every edge it services, and the
    object cost about ten times the read (cocotb 2.1's handle internals; the version is pinned).
    """
    bit = handle._handle.get_signal_val_binstr()
    if bit == "1":
        return True
    if bit == "0":
        return False
    raise ValueError(f"{handle._path} is {bit}: a stream's valid and ready must be 0 or 1")


class StreamPorts:
    """A group of stream drivers on one clock, serviced by one coroutine.

    Parameters
    ----------
    clock : cocotb handle
    """

    def __init__(self, clock):
        self._clock = clock
        self._sources = []
        self._sinks = []
        self._work = Event()
        self._after_edge = []
        self._busy = []

    def source(self, dut, name, **kwargs):
        """Add and return a :class:`StreamSource` on stream member ``name``."""
        driver = StreamSource(dut, name, self, **kwargs)
        self._sources.append(driver)
        return driver

    def sink(self, dut, name, **kwargs):
        """Add and return a :class:`StreamSink` on stream member ``name``."""
        driver = StreamSink(dut, name, **kwargs)
        self._sinks.append(driver)
        return driver

    def monitor(self, handle, name, **kwargs):
        """Add and return a :class:`StreamMonitor` on stream ``name`` of ``handle`` (a module
        of the design, inside it or the top)."""
        driver = StreamMonitor(handle, name, **kwargs)
        self._sinks.append(driver)
        return driver

    def after_edge(self, action, *, busy=None):
        """Call ``action(cycle)`` at every serviced edge, after every driver has seen it.

        ``busy``, a callable, keeps the group waking at every edge while it returns true (a
        model that works every cycle); call :meth:`wake` when it turns true from outside the
        group's edges.
        """
        self._after_edge.append(action)
        if busy is not None:
            self._busy.append(busy)

    def wake(self):
        """Tell the group that a driver has new work."""
        self._work.set()

    async def run(self):
        """Service the drivers; start it with :func:`cocotb.start_soon`."""
        edge = RisingEdge(self._clock)
        settled = ReadOnly()
        for sink in self._sinks:
            sink.idle()
        while True:
            if not self._working():
                # Work queued from here on (by a coroutine this edge woke) sets the event again.
                self._work.clear()
                await settled
                if not (self._working() or any(sink.offered() for sink in self._sinks)):
                    # A wake may come inside the ReadOnly phase (an event set by a coroutine
                    # that reads settled values), where ReadOnly cannot be awaited again: the
                    # group goes on to the next edge whatever woke it.
                    await self._sleep()
            await edge
            # What the design gives at an edge was decided before the edge; what it takes at the
            # edge, on the state before it. So results come first: a line that leaves the
            # design at an edge is gone for a request taken at that edge.
            now = cycle()
            for sink in self._sinks:
                sink.edge(now)
            for source in self._sources:
                source.edge(now)
            for action in self._after_edge:
                action(now)

    def _working(self):
        return (any(source.busy for source in self._sources)
                or any(busy() for busy in self._busy))

    async def _sleep(self):
        """Sleep until a source gets work or a sink's ``valid`` rises."""
        await First(self._work.wait(), *(RisingEdge(sink.valid) for sink in self._sinks))


class StreamSource:
    """Drive payloads into a stream sink port of the design. Made by :meth:`StreamPorts.source`.

    Parameters
    ----------
    on_accept : callable, optional
        ``on_accept(payload, offered_cycle, accepted_cycle)`` after each transfer;
        ``offered_cycle`` is the first edge at which the payload was valid.
    idle_percent : int
        Chance of a bubble (``valid`` low for a cycle) before each payload.
    rng : :class:`random.Random`, optional
        Source of the bubbles.
    """

    def __init__(self, dut, name, group, *, on_accept=None, idle_percent=0, rng=None):
        self._payload = getattr(dut, f"{name}__payload")
        self._valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._group = group
        self._on_accept = on_accept
        self._idle = idle_percent / 100
        self._rng = rng or random.Random(0)
        self._queue = deque()
        self._offered = None          # edge at which the head payload first shows, while valid
        self._valid_now = False
        self._valid.value = 0

    def send(self, payloads):
        """Queue ``payloads`` (integers); the first shows at the next edge if the port is free."""
        self._queue.extend(payloads)
        if self._queue:
            if self._offered is None:
                self._present(cycle() + 1)
            self._group.wake()

    def __len__(self):
        return len(self._queue)

    @property
    def showing(self):
        """Whether the head payload is on the port (``valid``)."""
        return self._offered is not None

    def queued(self, index):
        """Return the payload ``index`` places behind the head (the one shown, or next to show;
        index 0), or None if fewer are queued."""
        return self._queue[index] if index < len(self._queue) else None

    @property
    def busy(self):
        return bool(self._queue)

    def edge(self, now):
        # A payload presented during this time step first shows at the next edge.
        if self._offered is not None and self._offered <= now and high(self._ready):
            payload = self._queue.popleft()
            if self._on_accept is not None:
                self._on_accept(payload, self._offered, now)
            self._offered = None
        if self._offered is None:
            self._present(now + 1)

    def _present(self, at):
        if self._queue and (not self._idle or self._rng.random() >= self._idle):
            self._payload.value = self._queue[0]
            self._offered = at
            if not self._valid_now:
                self._valid.value = self._valid_now = True
        else:
            if self._valid_now:
                self._valid.value = self._valid_now = False


class StreamSink:
    """Take payloads from a stream source port of the design. Made by :meth:`StreamPorts.sink`.

    Parameters
    ----------
    on_receive : callable
        ``on_receive(payload, cycle)`` for each transfer.
    ready_percent : int
        Chance, per cycle, that ``ready`` is high (100: never any backpressure).
    rng : :class:`random.Random`, optional
        Source of the backpressure.
    """

    def __init__(self, dut, name, *, on_receive, ready_percent=100, rng=None):
        self._payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._on_receive = on_receive
        self._ready_chance = ready_percent / 100
        self._rng = rng or random.Random(0)
        self._ready_now = False
        self._ready.value = 0

    def idle(self):
        """Drive ``ready`` for the first cycle."""
        self._set_ready()

    def offered(self):
        """Return whether the design offers a payload now (read in the settled phase)."""
        return high(self.valid)

    def edge(self, now):
        if self._ready_now and high(self.valid):
            self._on_receive(int(self._payload.value), now)
        if self._ready_chance < 1:
            self._set_ready()

    def _set_ready(self):
        self._ready_now = self._ready_chance >= 1 or self._rng.random() < self._ready_chance
        self._ready.value = self._ready_now


class StreamMonitor:
    """Watch a stream inside the design without driving it. Made by :meth:`StreamPorts.monitor`.

    Parameters
    ----------
    on_transfer : callable
        ``on_transfer(payload, cycle)`` for each transfer.
    on_held : callable, optional
        ``on_held(cycle)`` for each edge at which a payload is offered and not taken.
    """

    def __init__(self, handle, name, *, on_transfer, on_held=None):
        self._payload = getattr(handle, f"{name}__payload")
        self.valid = getattr(handle, f"{name}__valid")
        self._ready = getattr(handle, f"{name}__ready")
        self._on_transfer = on_transfer
        self._on_held = on_held

    def idle(self):
        """Nothing to drive."""

    def offered(self):
        return high(self.valid)

    def edge(self, now):
        if high(self.valid):
            if high(self._ready):
                self._on_transfer(int(self._payload.value), now)
            elif self._on_held is not None:
                self._on_held(now)
