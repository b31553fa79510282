"""The behavioural SMT core and OS, run in step with the simulated clock.

:class:`CoreDriver` steps :class:`behavioral.core.SMTCore` once per rising edge while it has work
and skips the cycles in which it has none (every thread parked or waiting on an answer), so a
testbench wakes Python only when a port or the core has work. Cycle ``t`` of the core is the edge
``t`` of the simulation: events the design gives at edge ``t`` (taken by the testbench's sinks)
reach the core before it simulates cycle ``t``, and what the core sends in cycle ``t`` is offered
to the design from edge ``t + 1``.
"""

import cocotb
from cocotb.triggers import ClockCycles

from behavioral.core import SMTCore
from behavioral.os import OS

from .stream import cycle

__all__ = ["CoreDriver"]


class CoreDriver:
    """An :class:`~behavioral.core.SMTCore` and its :class:`~behavioral.os.OS` on a
    :class:`~tb.stream.StreamPorts` group.

    Parameters
    ----------
    ports : :class:`tb.stream.StreamPorts`
    clock : cocotb handle
    lock_port, notifier_port : objects or None
        The core's ports (see :mod:`behavioral.core`).
    on_residency : callable or None
        ``on_residency(context, resident, thread, evictable)`` when the OS changes what a context
        holds, for the tables of the design.
    on_endpoint : callable or None
        ``on_endpoint(index, fields)`` when the OS writes an endpoint's notification mode.
    core_params, os_params : dict
        Parameters of the core and of the OS.

    Attributes
    ----------
    core : :class:`~behavioral.core.SMTCore`
    os : :class:`~behavioral.os.OS`
    resumes : list
        ``(thread id, cycle, reason)`` of every first instruction after a wake-up.
    """

    def __init__(self, ports, clock, *, lock_port=None, notifier_port=None, on_residency=None,
                 on_endpoint=None, core_params=None, os_params=None):
        self._ports = ports
        self._clock = clock
        self.core = SMTCore(lock_port=lock_port, notifier_port=notifier_port,
                            **(core_params or {}))
        # The core's cycle numbers are the simulation's: it starts empty at the current edge.
        self.core.cycle = cycle()
        self.os = OS(self.core, **(os_params or {}))
        if on_residency is not None:
            self.os.on_residency(on_residency)
        if on_endpoint is not None:
            self.os.on_endpoint(on_endpoint)
        self.resumes = []
        self.core.on_resume(lambda thread, when, reason:
                            self.resumes.append((thread.tid, when, reason)))
        self._timer_wake = None
        ports.after_edge(self._edge, busy=self._busy)

    def sync(self):
        """Bring the core up to the current edge (skipping idle cycles) before an event reaches
        it; testbench callbacks call this first."""
        now = cycle()
        if self.core.cycle < now:
            self.core.run(now - self.core.cycle)

    def wake(self):
        """Tell the group that the core may have work (a thread was created or loaded)."""
        self.sync()
        self._ports.wake()

    def _busy(self):
        # Busy from the edge before a timer's, so that the group services the timer's edge.
        timer = self.core.next_timer_cycle
        return not self.core.idle or (timer is not None and timer <= cycle() + 1)

    def _edge(self, now):
        self.sync()
        self.core.step()
        # The OS's timers (its scheduling tick) must fire even while nothing else moves.
        timer = self.core.next_timer_cycle
        if self.core.idle and timer is not None and self._timer_wake != timer:
            self._timer_wake = timer
            cocotb.start_soon(self._wake_at(timer))

    async def _wake_at(self, when):
        """Wake the group at the edge before ``when``: it then services edge ``when``."""
        await ClockCycles(self._clock, max(1, when - 1 - cycle()))
        self._ports.wake()
