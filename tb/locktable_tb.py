"""Testbench of the LockTable: stream drivers on its six ports and the reference model as
scoreboard.

The table takes one operation per cycle, so the drivers see every operation it takes, in order
(:meth:`StreamSource` reports each transfer); the scoreboard applies each to
:class:`behavioral.locktable.LockTableModel` as it is taken and checks the table's answers and
wake-ups, port by port, in order, against the model's.
"""

from collections import Counter

from behavioral.locktable import LockTableModel
from rtl.layouts import (LockOp, LockOsEvent, LockReleased, LockRequest, LockResponse, LockSignal,
                         Residency, codec)

from .component_tb import ComponentTB, OrderedOutputs

__all__ = ["LockTableTB"]

OUTPUTS = {"response": LockResponse, "released": LockReleased, "os": LockOsEvent}


class LockTableTB(ComponentTB):
    """Sources on ``request``, ``signal`` and ``residency``, sinks on the three outputs, and the
    scoreboard, on a :class:`~tb.component_tb.ComponentTB`.

    Callbacks ``on_response(fields, cycle)``, ``on_released(fields, cycle)`` and
    ``on_os(fields, cycle)`` (settable attributes) see every checked output, for the core and
    OS models that drive the table.

    Parameters
    ----------
    dut : cocotb handle of the ``locktable`` top module
    seed : int or str
    ready_percent : int
        Backpressure on the three outputs, see :mod:`tb.stream`.
    """

    def __init__(self, dut, *, seed, ready_percent=100):
        super().__init__(dut, seed=seed)
        self.model = LockTableModel(**self.params)
        self.mismatches = []
        self.outputs = OrderedOutputs(OUTPUTS, self.mismatches)
        self.counts = {"requests": 0, "signals": 0, "residency": 0}
        self.statuses = {}
        self.signal_waits = []              # cycles each SIGNAL waited to be taken
        self.signalled = Counter()          # SIGNALs taken, by (asid, addr)
        self.offers = []                    # (offered edge, op or "SIGNAL", asid, addr) taken
        self.on_response = self.on_released = self.on_os = None
        self.request = self.ports.source(dut, "request", on_accept=self._request_taken)
        self.signal = self.ports.source(dut, "signal", on_accept=self._signal_taken)
        self.residency = self.ports.source(dut, "residency", on_accept=self._residency_taken)
        for name, layout in OUTPUTS.items():
            self.ports.sink(dut, name, on_receive=self.outputs.receiver(self, name, codec(layout)),
                            ready_percent=ready_percent, rng=self.rng)

    # Stimulus -----------------------------------------------------------------------------------

    def lock_request(self, op, asid, addr, thread):
        """Queue a core-side operation (``op`` a :class:`~rtl.layouts.LockOp`)."""
        self.request.send([codec(LockRequest).pack(op=op, asid=asid, addr=addr, thread=thread)])

    def lock_signal(self, asid, addr):
        """Queue a SIGNAL from the NI side."""
        self.signal.send([codec(LockSignal).pack(asid=asid, addr=addr)])

    def set_residency(self, context, resident, thread):
        """Queue a residency write: ``context`` holds ``thread`` (or nothing)."""
        self.residency.send([codec(Residency).pack(context=context, resident=resident,
                                                   thread=thread)])

    @property
    def outstanding(self):
        """Operations queued or results expected and not yet seen."""
        return len(self.request) + len(self.signal) + len(self.residency) + len(self.outputs)

    def check(self):
        """Fail on every mismatch the scoreboard found, and on a count the table disagrees with."""
        used = (int(self.dut.entries_used.value), int(self.dut.waiters_used.value))
        model = (self.params["entries"] - self.model.free_entries,
                 self.params["waiters"] - self.model.free_waiters)
        if used != model:
            self.mismatches.append(f"entries/waiters used: table {used}, model {model}")
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches, first: "
                                     + "; ".join(self.mismatches[:5]))

    def figures(self):
        return {**self.speed(), **self.params, "counts": {**self.counts, **self.outputs.counts},
                "statuses": dict(self.statuses), "mismatches": len(self.mismatches),
                "signal_wait_max": max(self.signal_waits, default=0)}

    # Scoreboard ---------------------------------------------------------------------------------

    def _expect(self, result):
        for name, fields in (("released", result.released), ("os", result.os_event)):
            if fields is not None:
                self.outputs.expect(name, fields)

    def _request_taken(self, payload, offered, accepted):
        self.counts["requests"] += 1
        request = codec(LockRequest).unpack(payload)
        self.offers.append((offered, request["op"], request["asid"], request["addr"]))
        result = self.model.request(request["op"], request["asid"], request["addr"],
                                    request["thread"])
        self.statuses[result.status.name] = self.statuses.get(result.status.name, 0) + 1
        self.outputs.expect("response", {"status": result.status, "thread": request["thread"]})
        self._expect(result)

    def _signal_taken(self, payload, offered, accepted):
        self.counts["signals"] += 1
        self.signal_waits.append(accepted - offered)
        signal = codec(LockSignal).unpack(payload)
        self.signalled[signal["asid"], signal["addr"]] += 1
        self.offers.append((offered, "SIGNAL", signal["asid"], signal["addr"]))
        result = self.model.signal(signal["asid"], signal["addr"])
        if result is None:
            self.mismatches.append(f"SIGNAL {signal} taken at {accepted}: the model holds it")
        else:
            self._expect(result)

    def _residency_taken(self, payload, offered, accepted):
        self.counts["residency"] += 1
        fields = codec(Residency).unpack(payload)
        self.model.residency(fields["context"], fields["resident"], fields["thread"])

    # Random workload ----------------------------------------------------------------------------

    def random_operation(self, mutexes, events, threads):
        """Queue one random operation on ``mutexes`` or ``events`` ((asid, addr) pairs): mostly
        ACQUIRE and RELEASE (by the owner, usually) on mutexes and WAIT and SIGNAL on events, a
        few on the wrong kind; now and then a residency change."""
        roll = self.rng.random()
        wrong = self.rng.random() < 0.03
        if roll < 0.3:
            asid, addr = self.rng.choice(events if wrong else mutexes)
            owner = self.model.owner(asid, addr)
            if self.rng.random() < 0.5:
                thread = owner if owner is not None and self.rng.random() < 0.8 else None
                op = LockOp.RELEASE
            else:
                thread, op = None, LockOp.ACQUIRE
            self.lock_request(op, asid, addr, self.rng.choice(threads) if thread is None
                              else thread)
        elif roll < 0.97:
            asid, addr = self.rng.choice(mutexes if wrong else events)
            if self.rng.random() < 0.45:
                self.lock_request(LockOp.WAIT, asid, addr, self.rng.choice(threads))
            else:
                self.lock_signal(asid, addr)
        else:
            context = self.rng.randrange(self.params["contexts"])
            self.set_residency(context, self.rng.random() < 0.9, self.rng.choice(threads))
