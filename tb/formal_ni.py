"""Proof harness of the NI's user MMIO isolation (:class:`rtl.ni.NetworkInterface`), k-induction.

:class:`NiProof` wraps a small NI (two endpoints, one context, a 2-entry TLB, ...: the MMIO
decoder is the same for every size) whose every input is free: any user access in any ASID to
any address, any OS command (so any endpoint table), any traffic, any backpressure, every cycle.
The harness keeps the endpoint table as the OS wrote it (WRITE_ENDPOINT, at the clock edge of
the command's transfer) and calls a user access *foreign* when it names an endpoint the NI has
and its ASID is not that endpoint's. The MMIO decoder can change the NI's state only through the
TX engine's slot writes and doorbells, the Notifier's command port (ARM_MODE), the ring head and
ARM_* registers, its answer and its fault report; the properties cover each:

* ``endpoint-table-as-written``: the endpoint table is what the OS wrote (a lemma the induction
  needs, and a check of the OS port);
* ``foreign-access-sends-nothing``: while a foreign access is offered, no doorbell reaches the
  TX engine;
* ``foreign-access-writes-no-slot``, ``foreign-access-arms-nothing``: nor a TX slot write, nor a
  Notifier command from the user side;
* ``foreign-access-changes-no-register``: the ring heads and ARM_* registers are the same after
  the edge that takes it (but a ring head the OS resets in that cycle);
* ``foreign-access-answers-error``: its answer is an error status (FOREIGN_ASID, or BAD_ADDRESS
  for an address with no register) with data 0, so no register is read either.

The proof is unbounded: SymbiYosys in ``prove`` mode (k-induction).
"""

from amaranth import *
from amaranth.hdl import Assume
from amaranth.lib import wiring

from rtl.layouts import PAGE_BITS, EndpointEntry, MmioStatus, NiOsOp, UserReg
from rtl.mmio import MmioDecoder
from rtl.ni import NetworkInterface

from .formal_sby import Properties, add_elaborated, drive_freely, observed

__all__ = ["NiProof", "RingHeadWithoutASIDCheck", "NI_PARAMS"]

#: The NI the proof is about: two endpoints, so that one's owner can reach the other's page.
NI_PARAMS = dict(node=0, nodes=2, endpoints=2, contexts=1, tlb_entries=2, asid_bits=2, lines=4,
                 tx_lines=1, rx_lines=2, lock_entries=2, lock_waiters=1, send_buffering=1,
                 queue_depth=1)


class _RingHeadUnchecked(MmioDecoder):
    """An MMIO decoder that takes any ASID for the owner of a RING_HEAD access."""

    @staticmethod
    def _owner(request, entry):
        return ((request.asid == entry.asid)
                | (request.addr[:PAGE_BITS] == UserReg.RING_HEAD.value))


class RingHeadWithoutASIDCheck(NetworkInterface):
    """A deliberately broken NI that does not check the ASID of RING_HEAD accesses."""
    mmio_class = _RingHeadUnchecked


class _PartsObserver:
    """Keeps the parts the NI builds for its elaboration (``parts``) for the proof to name."""

    def _build_parts(self):
        self.parts = {}
        for name, part in super()._build_parts():
            self.parts[name] = part
            yield name, part


class NiProof(wiring.Component):
    """Proof harness around an NI of ``ni_class`` (:class:`~rtl.ni.NetworkInterface` or a
    variant) with :data:`NI_PARAMS`."""

    def __init__(self, ni_class=NetworkInterface):
        self._ni = observed(ni_class, _PartsObserver)(**NI_PARAMS)
        self.properties = Properties()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        check = self.properties.check
        ni = self._ni
        add_elaborated(m, "ni", ni, platform)
        mmio = ni.parts["mmio"]
        arm = mmio.arm_registers
        drive_freely(m, ni)
        m.d.comb += Assume(~ResetSignal())

        # The endpoint table as the OS wrote it.
        command = ni.os_command
        written = [Signal(EndpointEntry, name=f"written{i}") for i in range(ni.endpoints)]
        os_resets = Signal(ni.endpoints)        # endpoints whose entry the OS writes now
        writes = (command.valid & command.ready
                  & (command.payload.op == NiOsOp.WRITE_ENDPOINT))
        for number, entry in enumerate(written):
            with m.If(writes & (command.payload.index == number)):
                m.d.comb += os_resets[number].eq(1)
                m.d.sync += entry.eq(command.payload.endpoint)
            check(m, "endpoint-table-as-written", mmio.endpoints[number] == entry)

        # A foreign access: to an endpoint the NI has, in an ASID that is not its owner's.
        request = ni.cpu_request
        endpoint = request.payload.addr[PAGE_BITS:]
        foreign = Signal()
        for number, entry in enumerate(written):
            with m.If(endpoint == number):
                m.d.comb += foreign.eq(request.payload.asid != entry.asid)
        with m.If(request.valid & foreign):
            check(m, "foreign-access-sends-nothing", ~mmio.doorbell.valid)
            check(m, "foreign-access-writes-no-slot", ~mmio.slot_write.valid)
            check(m, "foreign-access-arms-nothing", ~mmio.arm.valid)

        # After the edge that takes it: the registers as they were, an error answer.
        taken = Signal()
        head_before = [Signal.like(head, name=f"head_before{i}")
                       for i, head in enumerate(mmio.ring_head)]
        arm_before = {field: [Signal.like(value, name=f"arm_{field}_before{i}")
                              for i, value in enumerate(values)]
                      for field, values in arm.items()}
        os_reset_before = Signal(ni.endpoints)
        m.d.sync += [
            taken.eq(request.valid & request.ready & foreign),
            os_reset_before.eq(os_resets),
            *(before.eq(head) for before, head in zip(head_before, mmio.ring_head)),
            *(before.eq(value) for field, values in arm.items()
              for before, value in zip(arm_before[field], values)),
        ]
        response = ni.cpu_response
        with m.If(taken):
            check(m, "foreign-access-answers-error", response.valid
                  & (response.payload.status != MmioStatus.OK) & (response.payload.data == 0))
            for number, head in enumerate(mmio.ring_head):
                check(m, "foreign-access-changes-no-register",
                      (head == head_before[number]) | os_reset_before[number])
            for field, values in arm.items():
                for before, value in zip(arm_before[field], values):
                    check(m, "foreign-access-changes-no-register", value == before)
        return m
