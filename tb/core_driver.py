"""The behavioural SMT core and OS, run in step with the simulated clock.

:class:`CoreDriver` has the port group service an edge for the core only when the core may act on
the outside at that cycle: when it may take a new operation, issue one that is not a
``Compute``, or fire a timer (:meth:`behavioral.core.SMTCore.quiet_cycles`). The cycles between
(threads computing, parked, or waiting on an answer) are stepped or skipped in Python when the
next edge the core needs comes, or before an event from a port reaches the core (:meth:`sync`),
so that a testbench wakes Python only when a port or the core has work. ``lockstep`` services
every edge instead: the oracle that this changes nothing. Cycle ``t`` of the core is the edge
``t`` of the simulation: events the design gives at edge ``t`` (taken by the testbench's sinks)
reach the core before it simulates cycle ``t``, and what the core sends in cycle ``t`` is offered
to the design from edge ``t + 1``.
"""

import cocotb
from cocotb.triggers import Timer

from behavioral.core import SMTCore
from behavioral.os import OS

from .stream import cycle

__all__ = ["CoreDriver", "MIN_SLEEP_CYCLES"]

#: The shortest quiet stretch the port group sleeps through: putting it to sleep and waking it
#: costs about what servicing this many edges does (measured on the 2-node demo).
MIN_SLEEP_CYCLES = 16


class CoreDriver:
    """An :class:`~behavioral.core.SMTCore` and its :class:`~behavioral.os.OS` on a
    :class:`~tb.stream.StreamPorts` group.

    Parameters
    ----------
    ports : :class:`tb.stream.StreamPorts`
    lock_port, notifier_port : objects or None
        The core's ports (see :mod:`behavioral.core`).
    on_residency : callable or None
        ``on_residency(context, resident, thread, evictable)`` when the OS changes what a context
        holds, for the tables of the design.
    on_endpoint : callable or None
        ``on_endpoint(index, fields)`` when the OS writes an endpoint's notification mode.
    core_params, os_params : dict
        Parameters of the core and of the OS.
    lockstep : bool
        Step the core at every edge instead of skipping the cycles in which it has nothing to
        do: slower, and the oracle that skipping changes nothing.

    Attributes
    ----------
    core : :class:`~behavioral.core.SMTCore`
    os : :class:`~behavioral.os.OS`
    resumes : list
        ``(thread id, cycle, reason)`` of every first instruction after a wake-up.
    """

    def __init__(self, ports, *, lock_port=None, notifier_port=None, on_residency=None,
                 on_endpoint=None, core_params=None, os_params=None, lockstep=False):
        self._ports = ports
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
        self._lockstep = lockstep
        ports.after_edge(self._edge, busy=self._busy)

    def sync(self):
        """Bring the core up to the current edge (skipping idle cycles) before an event reaches
        it; testbench callbacks call this first."""
        now = cycle()
        if self._lockstep:
            while self.core.cycle < now:
                self.core.step()
        elif self.core.cycle < now:
            self.core.run(now - self.core.cycle)

    def wake(self):
        """Tell the group that the core may have work (a thread was created or loaded)."""
        self.sync()
        self._ports.wake()

    def _next_action(self):
        """The first cycle at whose edge the core must be stepped, or None (an event must come
        first)."""
        quiet = self.core.quiet_cycles()
        return None if quiet is None else self.core.cycle + quiet

    def _busy(self):
        if self._lockstep:
            return True
        # Busy from the edge before the core's, so that the group services that edge; and
        # through short quiet stretches, which cost less to service than to sleep through.
        action = self._next_action()
        return action is not None and action <= cycle() + 1 + MIN_SLEEP_CYCLES

    def _edge(self, now):
        self.sync()
        self.core.step()
        # Work the core will do later (a timer, the end of a computation) must wake the group
        # even while nothing else moves.
        action = self._next_action()
        if (not self._lockstep and action is not None and action > now + 1
                and self._timer_wake != action):
            self._timer_wake = action
            cocotb.start_soon(self._wake_at(action))

    async def _wake_at(self, when):
        """Wake the group at the time of the edge before ``when``: it then services edge
        ``when`` (or that edge as well, which steps the core early but changes nothing)."""
        await Timer(when - 1 - cycle(), "ns")
        self._ports.wake()
