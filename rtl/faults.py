from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import MAX_MESSAGE_FLITS, Flit, LinkFault, LinkFaultKind

__all__ = ["LinkFaultInjector"]


class LinkFaultInjector(wiring.Component):
    """A link that damages the messages it is told to: the fault injector of a test system
    (:class:`rtl.ni.System` with ``link_faults=True``), not part of an NI.

    Flits pass from ``i`` to ``o`` combinationally, one per cycle. A :data:`rtl.layouts.LinkFault`
    offered on ``command`` is taken together with the first flit of the next message to start,
    and applies to that message only (:class:`rtl.layouts.LinkFaultKind`; its model is
    :func:`behavioral.message.apply_link_fault`):

    * CORRUPT flips one bit of one flit;
    * TRUNCATE sets ``last`` on flit ``flit`` and then takes the message's remaining flits from
      ``i`` without passing them on;
    * APPEND clears ``last`` on the message's last flit and then offers one flit more (the last
      flit's data with bit ``bit`` flipped, ``last`` set), holding ``i`` for that cycle.

    Members
    -------
    i : In(stream.Signature(Flit))
        The link from the Fabric.
    o : Out(stream.Signature(Flit))
        The link to the NI.
    command : In(stream.Signature(LinkFault))
        The fault for the next message.
    injected : Out(32)
        Commands taken.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(Flit)),
            "o": Out(stream.Signature(Flit)),
            "command": In(stream.Signature(LinkFault)),
            "injected": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        index = Signal(range(MAX_MESSAGE_FLITS + 2))    # the flit's place in its message
        held = Signal(LinkFault)                        # the fault of the message under way
        armed = Signal()                                # that message has one
        dropping = Signal()                             # truncated: the rest of it is dropped
        extra = Signal()                                # appended: the flit more is due
        extra_data = Signal.like(self.o.payload.data)

        start = index == 0
        fault = Signal(LinkFault)
        active = Signal()
        m.d.comb += [
            fault.eq(Mux(start, self.command.payload, held)),
            active.eq(Mux(start, self.command.valid, armed)),
        ]
        at = active & (fault.flit == index)
        last = self.i.payload.last
        take = self.i.valid & self.i.ready

        with m.If(extra):
            m.d.comb += [
                self.o.valid.eq(1),
                self.o.payload.data.eq(extra_data),
                self.o.payload.last.eq(1),
            ]
            with m.If(self.o.ready):
                m.d.sync += extra.eq(0)
        with m.Elif(dropping):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid & last):
                m.d.sync += [dropping.eq(0), index.eq(0)]
        with m.Else():
            m.d.comb += [
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
                self.o.payload.eq(self.i.payload),
                self.command.ready.eq(start & take),
            ]
            with m.If(at & (fault.kind == LinkFaultKind.CORRUPT)):
                m.d.comb += self.o.payload.data.eq(self.i.payload.data ^ (1 << fault.bit))
            with m.If(at & (fault.kind == LinkFaultKind.TRUNCATE)):
                m.d.comb += self.o.payload.last.eq(1)
            with m.If(active & (fault.kind == LinkFaultKind.APPEND) & last):
                m.d.comb += self.o.payload.last.eq(0)
            with m.If(take):
                m.d.sync += index.eq(Mux(last, 0, index + 1))
                with m.If(start):
                    m.d.sync += [held.eq(self.command.payload), armed.eq(self.command.valid)]
                with m.If(at & (fault.kind == LinkFaultKind.TRUNCATE) & ~last):
                    m.d.sync += dropping.eq(1)
                with m.If(active & (fault.kind == LinkFaultKind.APPEND) & last):
                    m.d.sync += [extra.eq(1), extra_data.eq(self.i.payload.data ^ (1 << fault.bit))]
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += self.injected.eq(self.injected + 1)
        return m
