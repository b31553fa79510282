from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (ASID_BITS, MAX_CONTEXTS, EndpointWrite, MissAnswer, NiEngine, NiOsOp,
                      NiTunable, NotifierCommandOp, NotifyMode, Residency, ni_os_command_layout,
                      notifier_command_layout, tlb_command_layout)
from .fabric import check_max_cycles_per_flit
from .onehot import below
from .params import check_int
from .tlb import NITLB

__all__ = ["OsPort"]


class OsPort(wiring.Component):
    """The NI's privileged port: takes the OS's commands (:func:`rtl.layouts.ni_os_command_layout`)
    and hands each to the units it writes.

    Part of :class:`rtl.ni.NetworkInterface`, whose docstring gives what each command does.

    A command is taken on ``command`` and held until every unit it goes to has taken its part;
    the next is taken from the edge after the last part is taken (a command every other cycle
    when each unit takes its part at once), except after a TLB command: then from the edge after
    the NI TLB has applied it (:attr:`rtl.tlb.NITLB.MGMT_LATENCY` edges after it took it), so
    that the lookup a MISS_ANSWER retries sees the FILL sent before it.

    * WRITE_ENDPOINT: ``endpoint_write`` in the cycle the command is taken (the endpoint table
      takes it at that edge: it is always ready), then ``notifier`` from the cycle after
      (a Notifier WRITE_ENDPOINT with mode NONE, the entry's ASID and thread).
    * WRITE_CONTEXT: ``notifier`` (a Notifier WRITE_CONTEXT) and ``residency`` (the context's
      ``busy`` as ``resident``, its thread), both from the cycle after.
    * TLB: ``tlb`` from the cycle after.
    * MISS_ANSWER: ``tx_miss_answer`` or ``rx_miss_answer``, as ``engine`` says, from the cycle
      after.

    A WRITE_ENDPOINT naming an endpoint at or above ``endpoints``, or a WRITE_CONTEXT naming a
    context at or above ``contexts``, goes nowhere (not to the endpoint or context its low bits
    name).

    * TUNE: the tunable's register (``send_buffering``, ``link_cycles_per_flit``) takes
      ``value`` at the edge the command is taken, if the value is in its range (else, or for an
      unknown tunable, or CYCLES_PER_FLIT without ``max_cycles_per_flit``, nothing changes).

    Parameters
    ----------
    endpoints : int
        Endpoints of the NI, 1 to 16.
    contexts : int
        SMT contexts of the core, 1 to :data:`rtl.layouts.MAX_CONTEXTS`.
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to :data:`rtl.layouts.ASID_BITS`.
    send_buffering : int
        The most DMA lines the TX engine fetches ahead, 1 to 16 (the engine's).
    cycles_per_flit, max_cycles_per_flit : int
        The link's rate after reset, and the slowest the OS may tune it to (0: not tunable), as
        for :class:`rtl.fabric.Fabric`.

    Members
    -------
    command : In(stream.Signature(ni_os_command_layout(asid_bits)))
    endpoint_write : Out(stream.Signature(EndpointWrite))
        To the endpoint table; it must be always ready.
    notifier : Out(stream.Signature(notifier_command_layout(endpoints, contexts)))
    tlb : Out(stream.Signature(tlb_command_layout(asid_bits)))
    residency : Out(stream.Signature(Residency))
        To the lock table.
    tx_miss_answer, rx_miss_answer : Out(stream.Signature(MissAnswer))
        To the TX and RX engines.
    send_buffering : Out(range(1, send_buffering + 1))
        DMA lines the TX engine fetches ahead (NiTunable.SEND_BUFFERING); ``send_buffering``
        after reset.
    link_cycles_per_flit : Out(range(1, max(cycles_per_flit, max_cycles_per_flit) + 1))
        The rate of the link into the node (NiTunable.CYCLES_PER_FLIT); ``cycles_per_flit``
        after reset.
    """

    def __init__(self, *, endpoints=8, contexts=4, asid_bits=8, send_buffering=4,
                 cycles_per_flit=1, max_cycles_per_flit=0):
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 16)
        self._contexts = check_int(self, "contexts", contexts, 1, MAX_CONTEXTS)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, ASID_BITS)
        self._send_buffering = check_int(self, "send_buffering", send_buffering, 1, 16)
        self._cycles_per_flit = check_int(self, "cycles_per_flit", cycles_per_flit, 1, 256)
        self._max_cycles_per_flit = check_max_cycles_per_flit(self, max_cycles_per_flit,
                                                              cycles_per_flit)
        slowest = self._max_cycles_per_flit or cycles_per_flit
        super().__init__({
            "command": In(stream.Signature(ni_os_command_layout(asid_bits))),
            "endpoint_write": Out(stream.Signature(EndpointWrite)),
            "notifier": Out(stream.Signature(notifier_command_layout(endpoints, contexts))),
            "tlb": Out(stream.Signature(tlb_command_layout(asid_bits))),
            "residency": Out(stream.Signature(Residency)),
            "tx_miss_answer": Out(stream.Signature(MissAnswer)),
            "rx_miss_answer": Out(stream.Signature(MissAnswer)),
            "send_buffering": Out(range(1, send_buffering + 1), init=send_buffering),
            "link_cycles_per_flit": Out(range(1, slowest + 1), init=cycles_per_flit),
        })

    def elaborate(self, platform):
        m = Module()
        held = Signal(ni_os_command_layout(self._asid_bits))
        # The units the held command has still to reach.
        to_notifier, to_tlb, to_locktable, to_engine = Signal(), Signal(), Signal(), Signal()
        pending = Signal()
        # A TLB command changes the table MGMT_LATENCY edges after the TLB takes it; the next
        # command waits until then, so that a MISS_ANSWER's retried lookup sees the FILL before
        # it (else the retry misses again, and a repeated FILL keeps making it miss).
        settling = Signal(range(NITLB.MGMT_LATENCY + 1))
        with m.If(self.tlb.valid & self.tlb.ready):
            m.d.sync += settling.eq(NITLB.MGMT_LATENCY)
        with m.Elif(settling != 0):
            m.d.sync += settling.eq(settling - 1)
        m.d.comb += [pending.eq(to_notifier | to_tlb | to_locktable | to_engine),
                     self.command.ready.eq(~pending & (settling == 0))]

        # To each unit its part of the held command. (The Notifier reads the endpoint fields of a
        # WRITE_ENDPOINT, the context of a WRITE_CONTEXT; each is driven, whatever the op, so that
        # every bit has one driver.)
        notifier = self.notifier.payload
        m.d.comb += [
            self.notifier.valid.eq(to_notifier),
            notifier.op.eq(Mux(held.op == NiOsOp.WRITE_ENDPOINT, NotifierCommandOp.WRITE_ENDPOINT,
                               NotifierCommandOp.WRITE_CONTEXT)),
            notifier.index.eq(held.index),
            notifier.endpoint.mode.eq(NotifyMode.NONE),
            notifier.endpoint.asid.eq(held.endpoint.asid),
            notifier.endpoint.thread.eq(held.endpoint.thread),
            notifier.endpoint.lock.eq(0),
            notifier.endpoint.handler_pc.eq(0),
            notifier.endpoint.stack.eq(0),
            notifier.context.eq(held.context),
            self.tlb.valid.eq(to_tlb),
            self.tlb.payload.eq(held.tlb),
            self.residency.valid.eq(to_locktable),
            self.residency.payload.context.eq(held.index),
            self.residency.payload.resident.eq(held.context.busy),
            self.residency.payload.thread.eq(held.context.thread),
        ]
        for engine, answer in ((NiEngine.TX, self.tx_miss_answer),
                               (NiEngine.RX, self.rx_miss_answer)):
            m.d.comb += [answer.valid.eq(to_engine & (held.engine == engine)),
                         answer.payload.reject.eq(held.reject)]
        with m.If(self.notifier.ready):
            m.d.sync += to_notifier.eq(0)
        with m.If(self.tlb.ready):
            m.d.sync += to_tlb.eq(0)
        with m.If(self.residency.ready):
            m.d.sync += to_locktable.eq(0)
        with m.If((self.tx_miss_answer.valid & self.tx_miss_answer.ready)
                  | (self.rx_miss_answer.valid & self.rx_miss_answer.ready)):
            m.d.sync += to_engine.eq(0)

        # Take a command: note where it goes; the endpoint table is written at once.
        request = self.command.payload
        taken = Signal()
        endpoint_known, context_known = Signal(), Signal()
        m.d.comb += [taken.eq(self.command.valid & self.command.ready),
                     endpoint_known.eq(below(request.index, self._endpoints)),
                     context_known.eq(below(request.index, self._contexts))]
        writes_endpoint = (request.op == NiOsOp.WRITE_ENDPOINT) & endpoint_known
        writes_context = (request.op == NiOsOp.WRITE_CONTEXT) & context_known
        m.d.comb += [
            self.endpoint_write.valid.eq(taken & writes_endpoint),
            self.endpoint_write.payload.index.eq(request.index),
            self.endpoint_write.payload.entry.eq(request.endpoint),
        ]
        # TUNE: a value in range is taken at once.
        tunes = taken & (request.op == NiOsOp.TUNE)
        with m.If(tunes & (request.index == NiTunable.SEND_BUFFERING.value)
                  & (request.value >= 1) & (request.value <= self._send_buffering)):
            m.d.sync += self.send_buffering.eq(request.value)
        if self._max_cycles_per_flit:
            with m.If(tunes & (request.index == NiTunable.CYCLES_PER_FLIT.value)
                      & (request.value >= 1) & (request.value <= self._max_cycles_per_flit)):
                m.d.sync += self.link_cycles_per_flit.eq(request.value)
        with m.If(taken):
            m.d.sync += [
                held.eq(request),
                to_notifier.eq(writes_endpoint | writes_context),
                to_tlb.eq(request.op == NiOsOp.TLB),
                to_locktable.eq(writes_context),
                to_engine.eq(request.op == NiOsOp.MISS_ANSWER),
            ]
        return m
