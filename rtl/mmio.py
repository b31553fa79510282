from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (DESCRIPTOR_WORDS, ENDPOINT_BITS, FLIT_BYTES, MAX_CONTEXTS, PAGE_BITS,
                      VA_BITS, Doorbell, EndpointEntry, EndpointWrite, MmioRequest,
                      MmioResponse, MmioStatus, NiFault, NiFaultKind, NotifierCommandOp, NotifyMode,
                      TxSlotWrite, TxStatus, UserReg, notifier_command_layout)
from .onehot import below
from .params import check_int, check_node, node_number, node_strap

__all__ = ["MmioDecoder"]

#: The registers that ARM_MODE copies into the Notifier's endpoint entry, by the field they fill.
ARM_REGISTERS = {UserReg.ARM_LOCK: "lock", UserReg.ARM_HANDLER: "handler",
                 UserReg.ARM_STACK: "stack"}


class MmioDecoder(wiring.Component):
    """The NI's user-level MMIO port: decodes and checks each access to the endpoints' user pages,
    does what it asks, and answers it; and keeps the registers behind the pages (the endpoint
    table, each ring's head, the ARM_* values).

    Part of :class:`rtl.ni.NetworkInterface`, whose docstring gives the registers and the checks
    (BAD_ADDRESS, FOREIGN_ASID, SLOT_BUSY, in that order).

    **Timing.** One ``request`` is taken per cycle and answered on ``response`` at the next edge,
    in order. A request waits (not ready) while the answer before is not taken, or while the
    unit it needs cannot take it: the TX engine's ``doorbell`` for a DOORBELL write, the
    Notifier's command port (``arm``) for ARM_MODE, the fault port for a FOREIGN_ASID access
    (while its fault before is not taken). A write into the TX slot goes out on ``slot_write``
    in the cycle it is taken (the TX engine takes it at once); a doorbell's ``valid`` and an
    ARM_MODE's do not wait for the request's own (a unit's ready never waits for its valid).
    RING_HEAD, ARM_LOCK, ARM_HANDLER and ARM_STACK writes change the registers at the edge the
    request is taken; a read answers what they hold before it.

    **The endpoint table.** ``endpoint_write`` (from the OS port, always ready) writes an entry
    at the clock edge, sets the endpoint's ring head to 0 and pulses its ``ring_reset`` for the
    cycle after. A RING_HEAD write in the same cycle wins over the reset of the head. An
    ``endpoint_write`` naming an endpoint the decoder does not have changes nothing.

    Parameters
    ----------
    node : int or None
        This NI's node number (a FOREIGN_ASID fault's ``node``), 0 to 15; None: it comes in on
        the strap port ``node_id``.
    endpoints : int
        Endpoints (user pages), 1 to 16.
    contexts : int
        SMT contexts of the core, 1 to :data:`rtl.layouts.MAX_CONTEXTS` (the Notifier command's
        layout).

    Members
    -------
    request : In(stream.Signature(MmioRequest))
    response : Out(stream.Signature(MmioResponse))
        The user-level MMIO port.
    endpoint_write : In(stream.Signature(EndpointWrite))
        The OS port's table writes; always ready.
    endpoints : Out(EndpointEntry).array(endpoints)
    ring_head : Out(16).array(endpoints)
    ring_reset : Out(endpoints)
        The table, the heads user code writes, and a pulse per endpoint whose entry was written
        (to the RX engine).
    tx_status : In(TxStatus).array(endpoints)
    ring_tail : In(16).array(endpoints)
        What STATUS and RING_TAIL read (the TX and RX engines').
    slot_write : Out(stream.Signature(TxSlotWrite))
        Writes into the TX slots; the TX engine must take them at once.
    doorbell : Out(stream.Signature(Doorbell))
    arm : Out(stream.Signature(notifier_command_layout(endpoints, contexts)))
        ARM_MODE's WRITE_ENDPOINT of the Notifier: the mode written, the entry's ASID and thread,
        and the endpoint's ARM_LOCK, ARM_HANDLER and ARM_STACK.
    fault : Out(stream.Signature(NiFault))
        FOREIGN_ASID, from a register: ``endpoint`` and ``asid`` of the access, ``va`` its MMIO
        address.
    """

    def __init__(self, *, node=0, endpoints=8, contexts=4):
        self._node = check_node(self, node, 15)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._contexts = check_int(self, "contexts", contexts, 1, MAX_CONTEXTS)
        super().__init__({
            "request": In(stream.Signature(MmioRequest)),
            "response": Out(stream.Signature(MmioResponse)),
            "endpoint_write": In(stream.Signature(EndpointWrite)),
            "endpoints": Out(EndpointEntry).array(endpoints),
            "ring_head": Out(16).array(endpoints),
            "ring_reset": Out(endpoints),
            "tx_status": In(TxStatus).array(endpoints),
            "ring_tail": In(16).array(endpoints),
            "slot_write": Out(stream.Signature(TxSlotWrite)),
            "doorbell": Out(stream.Signature(Doorbell)),
            "arm": Out(stream.Signature(notifier_command_layout(endpoints, contexts))),
            "fault": Out(stream.Signature(NiFault)),
            **node_strap(self._node),
        })
        #: The ARM_* registers, per field of :data:`ARM_REGISTERS` one per endpoint (what a proof
        #: of the decoder names).
        self.arm_registers = {field: [Signal(VA_BITS, name=f"arm_{field}{i}")
                                      for i in range(endpoints)]
                              for field in ARM_REGISTERS.values()}

    @property
    def node(self):
        return self._node

    def elaborate(self, platform):
        m = Module()
        # (Lists indexed by If chains, not Arrays: an Array indexed by a wider endpoint number
        # makes case statements that do not cover every value.)
        table, head, arm = self.endpoints, self.ring_head, self.arm_registers

        # The OS port's writes of the table.
        write = self.endpoint_write.payload
        m.d.comb += self.endpoint_write.ready.eq(1)
        m.d.sync += self.ring_reset.eq(0)
        for index in range(self._endpoints):
            with m.If(self.endpoint_write.valid & (write.index == index)):
                m.d.sync += [table[index].eq(write.entry), head[index].eq(0),
                             self.ring_reset[index].eq(1)]

        request = self.request.payload
        endpoint = Signal(range(16))
        offset = Signal(PAGE_BITS)
        m.d.comb += [endpoint.eq(request.addr[PAGE_BITS:]), offset.eq(request.addr[:PAGE_BITS])]
        # The addressed endpoint's table entry, registers and TX status (zero if there is none).
        entry = Signal(EndpointEntry)
        known = Signal()
        m.d.comb += known.eq(below(endpoint, self._endpoints))
        status = Signal(TxStatus)
        tail, endpoint_head = Signal(16), Signal(16)
        arm_value = {field: Signal(VA_BITS, name=f"arm_{field}") for field in arm}
        for index in range(self._endpoints):
            with m.If(endpoint == index):
                m.d.comb += [entry.eq(table[index]), status.eq(self.tx_status[index]),
                             tail.eq(self.ring_tail[index]), endpoint_head.eq(head[index])]
                m.d.comb += [arm_value[field].eq(arm[field][index]) for field in arm]

        # Which register: the TX slot (descriptor or payload), or one of the others.
        is_descriptor, is_payload, slot_word = Signal(), Signal(), Signal(8)
        m.d.comb += [
            is_descriptor.eq(offset < DESCRIPTOR_WORDS * FLIT_BYTES),
            is_payload.eq(offset >= UserReg.PAYLOAD.value),
            slot_word.eq(Mux(is_descriptor, offset[3:], offset[3:] - UserReg.PAYLOAD.value // 8)),
        ]
        register = {reg: Signal(name=f"is_{reg.name.lower()}")
                    for reg in UserReg if reg not in (UserReg.DESCRIPTOR, UserReg.PAYLOAD)}
        for reg, flag in register.items():
            m.d.comb += flag.eq(offset == reg.value)

        # The answer, decided combinationally from the request and registered when taken.
        answer = Signal(MmioStatus)
        value = Signal(64)
        slot_access = Signal()
        m.d.comb += slot_access.eq(request.write & (is_descriptor | is_payload
                                                    | register[UserReg.DOORBELL]))
        readable = Signal()
        m.d.comb += readable.eq(register[UserReg.DOORBELL] | register[UserReg.STATUS]
                                | register[UserReg.RING_HEAD] | register[UserReg.RING_TAIL])
        writable = Signal()
        m.d.comb += writable.eq(is_descriptor | is_payload | register[UserReg.DOORBELL]
                                | register[UserReg.RING_HEAD] | register[UserReg.ARM_MODE]
                                | register[UserReg.ARM_LOCK] | register[UserReg.ARM_HANDLER]
                                | register[UserReg.ARM_STACK])
        word_aligned = Signal()
        m.d.comb += word_aligned.eq(offset[:3] == 0)
        bad_mode = Signal()
        m.d.comb += bad_mode.eq(register[UserReg.ARM_MODE]
                                & (request.data > max(mode.value for mode in NotifyMode)))
        with m.If(~known | ~entry.enabled | ~word_aligned
                  | Mux(request.write, ~writable, ~readable)):
            m.d.comb += answer.eq(MmioStatus.BAD_ADDRESS)
        with m.Elif(~self._owner(request, entry)):
            m.d.comb += answer.eq(MmioStatus.FOREIGN_ASID)
        with m.Elif(request.write & bad_mode):
            m.d.comb += answer.eq(MmioStatus.BAD_ADDRESS)
        with m.Elif(slot_access & status.busy):
            m.d.comb += answer.eq(MmioStatus.SLOT_BUSY)
        with m.Else():
            m.d.comb += answer.eq(MmioStatus.OK)
        with m.If(register[UserReg.STATUS]):
            m.d.comb += value.eq(status)
        with m.Elif(register[UserReg.RING_HEAD]):
            m.d.comb += value.eq(endpoint_head)
        with m.Elif(register[UserReg.RING_TAIL]):
            m.d.comb += value.eq(tail)

        # What an accepted write does, and the unit it needs.
        ok = Signal()
        m.d.comb += ok.eq(self.request.valid & request.write & (answer == MmioStatus.OK))
        doorbell, arming = Signal(), Signal()
        m.d.comb += [doorbell.eq(ok & register[UserReg.DOORBELL]),
                     arming.eq(ok & register[UserReg.ARM_MODE])]
        foreign = Signal()
        m.d.comb += foreign.eq(self.request.valid & (answer == MmioStatus.FOREIGN_ASID))
        # The answer slot: free, or its answer is taken now.
        response_free = Signal()
        m.d.comb += response_free.eq(~self.response.valid | self.response.ready)
        # The unit a request needs can take it.
        unit_ready = Signal()
        m.d.comb += unit_ready.eq(Mux(doorbell, self.doorbell.ready, 1)
                                  & Mux(arming, self.arm.ready, 1)
                                  & Mux(foreign, ~self.fault.valid, 1))
        take = Signal()
        m.d.comb += [
            self.request.ready.eq(response_free & unit_ready),
            take.eq(self.request.valid & self.request.ready),
        ]

        m.d.comb += [
            self.slot_write.valid.eq(take & ok & (is_descriptor | is_payload)),
            self.slot_write.payload.endpoint.eq(endpoint),
            self.slot_write.payload.descriptor.eq(is_descriptor),
            self.slot_write.payload.word.eq(slot_word),
            self.slot_write.payload.data.eq(request.data),
            self.doorbell.valid.eq(response_free & doorbell),
            self.doorbell.payload.endpoint.eq(endpoint),
            self.doorbell.payload.asid.eq(request.asid),
            self.arm.valid.eq(response_free & arming),
            self.arm.payload.op.eq(NotifierCommandOp.WRITE_ENDPOINT),
            self.arm.payload.index.eq(endpoint),
            self.arm.payload.endpoint.mode.eq(request.data[:Shape.cast(NotifyMode).width]),
            self.arm.payload.endpoint.asid.eq(entry.asid),
            self.arm.payload.endpoint.thread.eq(entry.thread),
            self.arm.payload.endpoint.lock.eq(arm_value["lock"]),
            self.arm.payload.endpoint.handler_pc.eq(arm_value["handler"]),
            self.arm.payload.endpoint.stack.eq(arm_value["stack"]),
        ]

        # RING_HEAD and ARM_* writes need no unit: taken when the answer slot is free. Each
        # endpoint's registers are enabled from that endpoint's own entry (not the addressed
        # entry, selected among all), which keeps the enables short.
        register_write = Signal()
        m.d.comb += register_write.eq(self.request.valid & request.write & word_aligned
                                      & response_free)
        for index in range(self._endpoints):
            own = table[index].enabled & self._owner(request, table[index])
            with m.If(register_write & (endpoint == index) & own):
                with m.If(register[UserReg.RING_HEAD]):
                    m.d.sync += head[index].eq(request.data[:16])
                for reg, field in ARM_REGISTERS.items():
                    with m.If(register[reg]):
                        m.d.sync += arm[field][index].eq(request.data[:VA_BITS])
        # (A fault is taken before a new one is set: a FOREIGN_ASID access waits for the port.)
        with m.If(self.fault.ready):
            m.d.sync += self.fault.valid.eq(0)
        # The answer and fault registers load whenever they are free (what they load matters
        # only with their valid, set when the request is taken): their enables stay off the
        # decode's path.
        with m.If(response_free):
            m.d.sync += [self.response.payload.status.eq(answer),
                         self.response.payload.data.eq(Mux(answer == MmioStatus.OK, value, 0))]
        with m.If(~self.fault.valid):
            m.d.sync += [
                self.fault.payload.kind.eq(NiFaultKind.FOREIGN_ASID),
                self.fault.payload.endpoint.eq(endpoint),
                self.fault.payload.asid.eq(request.asid),
                self.fault.payload.va.eq(request.addr),
                self.fault.payload.node.eq(node_number(self)),
            ]
        with m.If(take):
            m.d.sync += self.response.valid.eq(1)
            with m.If(foreign):
                m.d.sync += self.fault.valid.eq(1)
        with m.Elif(self.response.ready):
            m.d.sync += self.response.valid.eq(0)
        return m

    @staticmethod
    def _owner(request, entry):
        """Whether ``request`` comes from the address space that owns the endpoint of
        ``entry``."""
        return request.asid == entry.asid
