"""Testbench of the Notifier: stream drivers on its six ports and the reference model as
scoreboard.

The Notifier takes one input per cycle, so the drivers see every input it takes, in order; the
scoreboard applies each to :class:`behavioral.notifier.NotifierModel` as it is taken and checks
the events, signals and OS hand-offs, port by port, in order, and the path counters.
"""

from behavioral.notifier import NotifierModel
from rtl.layouts import (NOTIFIER_COUNTERS, Completion, HandlerReturn, LockSignal,
                         NotifierCommandOp, NotifyEvent, NotifyOsEvent, codec,
                         notifier_command_layout)

from .component_tb import ComponentTB, OrderedOutputs

__all__ = ["NotifierTB"]

OUTPUTS = {"event": NotifyEvent, "signal": LockSignal, "os": NotifyOsEvent}


class NotifierTB(ComponentTB):
    """Sources on ``completion``, ``handler_return`` and ``command``, sinks on the three
    outputs, and the scoreboard, on a :class:`~tb.component_tb.ComponentTB`.

    Callbacks ``on_event``, ``on_signal`` and ``on_os`` (settable attributes, each
    ``callback(fields, cycle)``) see every checked output; ``on_completion(fields, cycle)`` sees
    each completion as the Notifier takes it.

    Parameters
    ----------
    dut : cocotb handle of the ``notifier`` top module
    seed : int or str
    ready_percent : int
        Backpressure on the three outputs, see :mod:`tb.stream`.
    """

    def __init__(self, dut, *, seed, ready_percent=100):
        super().__init__(dut, seed=seed)
        self.model = NotifierModel(**self.params)
        self.command_codec = codec(notifier_command_layout(self.params["endpoints"],
                                                           self.params["contexts"]))
        self.mismatches = []
        self.outputs = OrderedOutputs(OUTPUTS, self.mismatches)
        self.counts = {"completions": 0, "returns": 0, "commands": 0}
        self.on_event = self.on_signal = self.on_os = self.on_completion = None
        self.completion = self.ports.source(dut, "completion", on_accept=self._completion_taken)
        self.handler_return = self.ports.source(dut, "handler_return",
                                                on_accept=self._return_taken)
        self.command = self.ports.source(dut, "command", on_accept=self._command_taken)
        for name, layout in OUTPUTS.items():
            self.ports.sink(dut, name, on_receive=self.outputs.receiver(self, name, codec(layout)),
                            ready_percent=ready_percent, rng=self.rng)

    # Stimulus -----------------------------------------------------------------------------------

    def complete(self, endpoint, entry):
        """Queue a completion: a message's entry at ``entry`` was written for ``endpoint``."""
        self.completion.send([codec(Completion).pack(endpoint=endpoint, entry=entry)])

    def returned(self, op, endpoint=0, context=0):
        """Queue a handler return (``op`` a :class:`~rtl.layouts.HandlerReturnOp`)."""
        self.handler_return.send([codec(HandlerReturn).pack(op=op, endpoint=endpoint,
                                                            context=context)])

    def write_endpoint(self, index, **fields):
        """Queue an endpoint-table write (fields of :data:`~rtl.layouts.NotifierEndpoint`)."""
        self.command.send([self.command_codec.pack(op=NotifierCommandOp.WRITE_ENDPOINT,
                                                   index=index, endpoint=fields)])

    def write_context(self, index, **fields):
        """Queue a context-table write (fields of :data:`~rtl.layouts.NotifierContext`)."""
        self.command.send([self.command_codec.pack(op=NotifierCommandOp.WRITE_CONTEXT,
                                                   index=index, context=fields)])

    @property
    def outstanding(self):
        return (len(self.completion) + len(self.handler_return) + len(self.command)
                + len(self.outputs))

    def counters(self):
        """Return the Notifier's path counters, read from the design."""
        return {name: int(getattr(self.dut, f"count_{name}").value) for name in NOTIFIER_COUNTERS}

    def check(self):
        """Fail on every mismatch, and if the design's counters differ from the model's."""
        if self.counters() != self.model.counters:
            self.mismatches.append(f"counters: design {self.counters()}, "
                                   f"model {self.model.counters}")
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches, first: "
                                     + "; ".join(self.mismatches[:5]))

    def figures(self):
        return {**self.speed(), **self.params, "counts": {**self.counts, **self.outputs.counts},
                "counters": self.counters(), "mismatches": len(self.mismatches)}

    # Scoreboard ---------------------------------------------------------------------------------

    def _expect(self, result):
        for name, fields in (("event", result.event), ("signal", result.signal),
                             ("os", result.os_event)):
            if fields is not None:
                self.outputs.expect(name, fields)

    def _completion_taken(self, payload, offered, accepted):
        self.counts["completions"] += 1
        fields = codec(Completion).unpack(payload)
        self._expect(self.model.completion(fields["endpoint"], fields["entry"]))
        if self.on_completion:
            self.on_completion(fields, accepted)

    def _return_taken(self, payload, offered, accepted):
        self.counts["returns"] += 1
        fields = codec(HandlerReturn).unpack(payload)
        self._expect(self.model.handler_return(fields["op"], fields["endpoint"],
                                               fields["context"]))

    def _command_taken(self, payload, offered, accepted):
        self.counts["commands"] += 1
        fields = self.command_codec.unpack(payload)
        self.model.command(fields["op"], fields["index"], endpoint=fields["endpoint"],
                           context=fields["context"])
