"""The NI in a bus-standard shell: AXI4-Lite register pages, AXI4-Stream links and core ports, an
AXI4 memory master.

The shell's ports follow AXI's names (``<prefix>_<channel signal>``, lower case), so that
cocotbext-axi's buses (``AxiLiteBus.from_prefix(dut, "s_axil")``) and vendor tools' interface
inference find them as they are. Inside, every channel is a stream.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (ASID_BITS, AXI_DATA_BITS, LINE_BYTES, LINE_WORDS, MMIO_ADDR_BITS, NODE_BITS,
                      OS_COMMAND_WORDS, OS_COUNTERS, OS_EVENT_WORDS, PA_BITS, PAGE_BITS,
                      AxiLiteAnswer, AxiResp, CohResponse, HandlerReturn, LineBeat,
                      LineRequest, LockReleased, LockRequest, LockResponse, MessageHeader,
                      MmioRequest, MmioResponse, MmioStatus, NotifyEvent, OsReg,
                      axi_lite_access_layout, axis_data_bits, ni_os_command_layout)
from .ni import NetworkInterface
from .params import check_int, silence_unused

__all__ = ["AxiLiteTarget", "UserPageBridge", "NetworkInterfaceAXI", "NetworkInterfacesAXI",
           "CORE_STREAMS", "axi_lite_members", "axi_members", "axis_members"]

#: The AXI4-Lite signals, each with whether a target (slave) takes it in and its width (None: the
#: address; 0: the data; -1: the strobes).
_AXI_LITE = (("awaddr", True, None), ("awprot", True, 3), ("awvalid", True, 1),
             ("awready", False, 1), ("wdata", True, 0), ("wstrb", True, -1),
             ("wvalid", True, 1), ("wready", False, 1), ("bresp", False, 2),
             ("bvalid", False, 1), ("bready", True, 1), ("araddr", True, None),
             ("arprot", True, 3), ("arvalid", True, 1), ("arready", False, 1),
             ("rdata", False, 0), ("rresp", False, 2), ("rvalid", False, 1), ("rready", True, 1))

#: The AXI4 signals of the shell's memory master, each with whether the master drives it and its
#: width (None: the address).
_AXI_ID_BITS = 1
_AXI = (("awid", True, _AXI_ID_BITS), ("awaddr", True, None), ("awlen", True, 8),
        ("awsize", True, 3), ("awburst", True, 2), ("awlock", True, 1), ("awcache", True, 4),
        ("awprot", True, 3), ("awvalid", True, 1), ("awready", False, 1),
        ("wdata", True, AXI_DATA_BITS), ("wstrb", True, AXI_DATA_BITS // 8), ("wlast", True, 1),
        ("wvalid", True, 1), ("wready", False, 1),
        ("bid", False, _AXI_ID_BITS), ("bresp", False, 2), ("bvalid", False, 1),
        ("bready", True, 1),
        ("arid", True, _AXI_ID_BITS), ("araddr", True, None), ("arlen", True, 8),
        ("arsize", True, 3), ("arburst", True, 2), ("arlock", True, 1), ("arcache", True, 4),
        ("arprot", True, 3), ("arvalid", True, 1), ("arready", False, 1),
        ("rid", False, _AXI_ID_BITS), ("rdata", False, AXI_DATA_BITS), ("rresp", False, 2),
        ("rlast", False, 1), ("rvalid", False, 1), ("rready", True, 1))

#: The read IDs of the memory master: the TX engine's DMA reads and the MessageBuffer's merges.
_DMA_ID, _MERGE_ID = 0, 1
#: AXI burst of one line: INCR, LINE_WORDS beats of 8 bytes.
_BURST_INCR = 1
_SIZE_8_BYTES = 3

#: The NI's core-side stream ports the shell carries on AXI4-Stream, each with whether the NI
#: sends on it and its payload layout (``TDATA`` is the payload, from bit 0, padded to bytes).
CORE_STREAMS = {
    "lock_request": (False, LockRequest), "lock_response": (True, LockResponse),
    "lock_released": (True, LockReleased), "notify": (True, NotifyEvent),
    "handler_return": (False, HandlerReturn),
    "coh_req": (True, LineRequest), "coh_resp": (False, CohResponse),
    "mc_lookup": (False, LineRequest), "mc_data": (True, LineBeat),
}


def axi_lite_members(prefix, addr_width):
    """Return the signature members of an AXI4-Lite target (slave) port named
    ``<prefix>_<signal>``, 64-bit data."""
    members = {}
    for name, taken_in, width in _AXI_LITE:
        width = {None: addr_width, 0: AXI_DATA_BITS, -1: AXI_DATA_BITS // 8}.get(width, width)
        members[f"{prefix}_{name}"] = (In if taken_in else Out)(width)
    return members


def axi_members(prefix, addr_width):
    """Return the signature members of an AXI4 master port named ``<prefix>_<signal>``, 64-bit
    data, 1-bit IDs."""
    return {f"{prefix}_{name}": (Out if driven else In)(addr_width if width is None else width)
            for name, driven, width in _AXI}


def axis_members(prefix, data_bits, *, source, last=False, dest_bits=0):
    """Return the signature members of an AXI4-Stream port named ``<prefix>_<signal>``: a
    source's (master's) if ``source``, else a sink's; with ``TLAST`` if ``last`` and ``TDEST``
    of ``dest_bits`` if any."""
    out, back = (Out, In) if source else (In, Out)
    members = {f"{prefix}_tdata": out(data_bits), f"{prefix}_tvalid": out(1),
               f"{prefix}_tready": back(1)}
    if last:
        members[f"{prefix}_tlast"] = out(1)
    if dest_bits:
        members[f"{prefix}_tdest"] = out(dest_bits)
    return members


class _Port:
    """The members of a component named ``<prefix>_<signal>``, as attributes named ``signal``."""

    def __init__(self, component, prefix):
        self._component = component
        self._prefix = prefix

    def __getattr__(self, name):
        return getattr(self._component, f"{self._prefix}_{name}")


class AxiLiteTarget(wiring.Component):
    """An AXI4-Lite target (slave) with 64-bit data that hands each access on as a stream, one
    at a time.

    A write is taken once both its address and its data are in (in either order, or together);
    a read once no write is half taken. The access goes out on ``request``; its ``answer``
    (taken at once) becomes the write response or the read data, SLVERR if ``error``, OKAY else.
    The next access is taken once that response has been taken. The address is passed as it
    came; ``AWPROT`` and ``ARPROT`` are not used.

    Parameters
    ----------
    addr_width : int
        Width of ``AWADDR`` and ``ARADDR``, 3 to 48.

    Members
    -------
    axil_* : the AXI4-Lite target port (``axil_awaddr`` ... ``axil_rready``)
    request : Out(stream.Signature(axi_lite_access_layout(addr_width)))
        The access taken.
    answer : In(stream.Signature(AxiLiteAnswer))
        Its answer; ready from the cycle after ``request`` is taken until the answer comes.
    """

    def __init__(self, *, addr_width=12):
        self._addr_width = check_int(self, "addr_width", addr_width, 3, 48)
        super().__init__({
            **axi_lite_members("axil", addr_width),
            "request": Out(stream.Signature(axi_lite_access_layout(addr_width))),
            "answer": In(stream.Signature(AxiLiteAnswer)),
        })

    @property
    def addr_width(self):
        return self._addr_width

    def elaborate(self, platform):
        m = Module()
        bus = _Port(self, "axil")

        # The write's address and data as they come in, each held until the write is done.
        have_addr = Signal(name="have_write_addr")
        have_data = Signal(name="have_write_data")
        access = Signal.like(self.request.payload, name="access")
        response = Signal(AxiResp, name="response")
        m.d.comb += [
            self.request.payload.eq(access),
            bus.bresp.eq(response),
            bus.rresp.eq(response),
        ]

        with m.FSM(name="axil"):
            with m.State("IDLE"):
                m.d.comb += [
                    bus.awready.eq(~have_addr),
                    bus.wready.eq(~have_data),
                    bus.arready.eq(~have_addr & ~have_data),
                ]
                with m.If(bus.awvalid & ~have_addr):
                    m.d.sync += [have_addr.eq(1), access.addr.eq(bus.awaddr)]
                with m.If(bus.wvalid & ~have_data):
                    m.d.sync += [have_data.eq(1), access.data.eq(bus.wdata),
                                 access.strb.eq(bus.wstrb)]
                with m.If((have_addr | bus.awvalid) & (have_data | bus.wvalid)):
                    m.d.sync += access.write.eq(1)
                    m.next = "REQUEST"
                with m.Elif(bus.arvalid & ~have_addr & ~have_data):
                    m.d.sync += [access.write.eq(0), access.addr.eq(bus.araddr),
                                 access.data.eq(0), access.strb.eq(0)]
                    m.next = "REQUEST"
            with m.State("REQUEST"):
                m.d.comb += self.request.valid.eq(1)
                with m.If(self.request.ready):
                    m.next = "ANSWER"
            with m.State("ANSWER"):
                m.d.comb += self.answer.ready.eq(1)
                with m.If(self.answer.valid):
                    m.d.sync += [
                        response.eq(Mux(self.answer.payload.error, AxiResp.SLVERR, AxiResp.OKAY)),
                        bus.rdata.eq(self.answer.payload.data),
                    ]
                    with m.If(access.write):
                        m.next = "WRITE_RESPONSE"
                    with m.Else():
                        m.next = "READ_DATA"
            with m.State("WRITE_RESPONSE"):
                m.d.comb += bus.bvalid.eq(1)
                with m.If(bus.bready):
                    m.d.sync += [have_addr.eq(0), have_data.eq(0)]
                    m.next = "IDLE"
            with m.State("READ_DATA"):
                m.d.comb += bus.rvalid.eq(1)
                with m.If(bus.rready):
                    m.next = "IDLE"
        return m


class UserPageBridge(wiring.Component):
    """Hands the user pages' AXI4-Lite accesses to the NI's MMIO port, or refuses them.

    Part of :class:`NetworkInterfaceAXI`. An access at ``asid << 16 | endpoint << 12 | offset``
    becomes the MMIO request of ``asid`` at ``endpoint << 12 | offset``; its answer is the
    access's, an error unless OK, a read's data 0 unless OK. A write whose strobes are not all
    set, or an address that is not a whole word, is answered with an error in the cycle after it
    is taken, and never reaches ``cpu_request``. One access at a time: the next is offered once
    the answer is taken (as :class:`AxiLiteTarget` does).

    Parameters
    ----------
    asid_bits : int
        Width of the ASIDs in the address, 1 to :data:`rtl.layouts.ASID_BITS`.

    Members
    -------
    access : In(stream.Signature(axi_lite_access_layout(asid_bits + 16)))
    answer : Out(stream.Signature(AxiLiteAnswer))
        The AXI4-Lite side.
    cpu_request : Out(stream.Signature(MmioRequest))
    cpu_response : In(stream.Signature(MmioResponse))
        The NI's user-level MMIO port.
    """

    def __init__(self, *, asid_bits=8):
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, ASID_BITS)
        super().__init__({
            "access": In(stream.Signature(axi_lite_access_layout(asid_bits + MMIO_ADDR_BITS))),
            "answer": Out(stream.Signature(AxiLiteAnswer)),
            "cpu_request": Out(stream.Signature(MmioRequest)),
            "cpu_response": In(stream.Signature(MmioResponse)),
        })

    @property
    def asid_bits(self):
        return self._asid_bits

    def elaborate(self, platform):
        m = Module()
        access = self.access.payload
        response = self.cpu_response.payload
        # ``refused``: the access taken was not the NI's to see; its answer is an error.
        refused = Signal(name="refused")
        bad = Signal(name="bad")
        failed = Signal(name="failed")
        m.d.comb += [
            bad.eq((access.write & (access.strb != 0xFF)) | (access.addr[:3] != 0)),
            self.cpu_request.payload.write.eq(access.write),
            self.cpu_request.payload.asid.eq(access.addr[MMIO_ADDR_BITS:]),
            self.cpu_request.payload.addr.eq(access.addr[:MMIO_ADDR_BITS]),
            self.cpu_request.payload.data.eq(access.data),
            self.cpu_request.valid.eq(self.access.valid & ~bad),
            self.access.ready.eq(bad | self.cpu_request.ready),
            failed.eq(refused | (response.status != MmioStatus.OK)),
            self.answer.valid.eq(refused | self.cpu_response.valid),
            self.answer.payload.error.eq(failed),
            self.answer.payload.data.eq(Mux(failed, 0, response.data)),
            self.cpu_response.ready.eq(self.answer.ready & ~refused),
        ]
        with m.If(self.access.valid & bad):
            m.d.sync += refused.eq(1)
        with m.Elif(self.answer.valid & self.answer.ready):
            m.d.sync += refused.eq(0)
        return m


def _wire(m, outer, outer_prefix, inner, inner_prefix=""):
    """Join each member of ``inner`` named ``<inner_prefix><signal>`` to the member of ``outer``
    named ``<outer_prefix><signal>`` (of the same shape and direction)."""
    for path, member in inner.signature.members.flatten():
        name = path[0]
        if not name.startswith(inner_prefix):
            continue
        outer_signal = getattr(outer, outer_prefix + name[len(inner_prefix):])
        inner_signal = getattr(inner, name)
        if member.flow == In:
            m.d.comb += inner_signal.eq(outer_signal)
        else:
            m.d.comb += outer_signal.eq(inner_signal)


class NetworkInterfaceAXI(wiring.Component):
    """A :class:`rtl.ni.NetworkInterface` behind AXI ports, for a system built around a standard
    interconnect.

    **User pages** (``s_axil``, AXI4-Lite, 64-bit data, ``asid_bits + 16`` address bits): an
    access at ``asid << 16 | endpoint << 12 | offset`` is the NI's user MMIO access by ``asid``
    (each process's mapping of the NI window carries its ASID in the address bits above the
    pages) to the register at ``offset`` of endpoint ``endpoint``'s page (:class:`UserReg`). An
    answer other than OK (BAD_ADDRESS, FOREIGN_ASID, SLOT_BUSY: the NI's, with its effects, a
    FOREIGN_ASID fault among them) answers SLVERR, a read's data 0. The shell answers SLVERR
    itself, and the NI sees nothing, for a write whose strobes are not all set and for an address
    that is not a whole word.

    **OS page** (``s_axil_os``, AXI4-Lite, 12 address bits): :class:`rtl.layouts.OsReg`. A
    command is written into COMMAND and handed to the NI by a write to ISSUE, whose response
    comes once the NI has taken it. Faults, lock-table events and Notifier events are read from
    FAULT, LOCK_EVENT and NOTIFY_EVENT (reading an event's word 1 takes it); ``irq`` is high
    while one of them waits. The NI's counters read from COUNTERS on. A write whose strobes are
    not all set, an address that is not a whole word or names no register, a read of ISSUE and a
    write of anything but COMMAND and ISSUE answer SLVERR and change nothing.

    **Link** (``m_axis_link`` and ``s_axis_link``, AXI4-Stream, 64-bit ``TDATA``): a flit a
    beat, ``TLAST`` on a message's last. ``m_axis_link_tdest`` is the message's destination node
    on every beat (from its first flit, so that a router can switch on the first beat).

    **Core ports** (:data:`CORE_STREAMS`, AXI4-Stream ``m_axis_<name>`` from the NI,
    ``s_axis_<name>`` into it): the lock operations, notifications and handler returns of the
    core's contexts, and the core caches' coherence and L1-miss probes of the MessageBuffer;
    ``TDATA`` is the NI port's payload (:mod:`rtl.layouts`) from bit 0, padded to bytes.

    **Memory** (``m_axi``, AXI4 master, 64-bit data, 32-bit addresses, 1-bit IDs): every access
    is one line, an INCR burst of 8 beats at the line's address. ID 0 reads for the TX engine's
    DMA, ID 1 reads for the MessageBuffer's merges (each ID's answers in the order asked, as AXI
    keeps them); writes are the MessageBuffer's write-backs, the line's address issued with its
    first beat's, the data not waiting for the address to be taken. Responses other than OKAY are
    counted (``axi_errors`` in the OS page) and otherwise ignored. The MessageBuffer frees a line
    as its last beat is taken: the interconnect must order a later read of the line behind the
    write (as a single memory port does).

    Parameters
    ----------
    node, nodes, endpoints, contexts, tlb_entries, asid_bits, lines, tx_lines, rx_lines, merges,
    lock_entries, lock_waiters, lock_count_bits, send_buffering, queue_depth :
        As for :class:`rtl.ni.NetworkInterface` (``node`` a number: the shell has no strap).

    Members
    -------
    s_axil_* : the user pages (AXI4-Lite target)
    s_axil_os_* : the OS page (AXI4-Lite target)
    irq : Out(1)
        High while a fault or an event for the OS waits.
    m_axis_link_*, s_axis_link_* : the link out of and into the node (AXI4-Stream)
    m_axis_<name>_*, s_axis_<name>_* : the core ports of :data:`CORE_STREAMS` (AXI4-Stream)
    m_axi_* : the memory (AXI4 master)
    """

    def __init__(self, *, node=0, nodes=2, endpoints=8, contexts=4, tlb_entries=32, asid_bits=8,
                 lines=64, tx_lines=16, rx_lines=48, merges=16, lock_entries=32,
                 lock_waiters=32, lock_count_bits=8, send_buffering=4, queue_depth=4):
        check_int(self, "node", node, 0, nodes - 1 if isinstance(nodes, int) else 15)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, ASID_BITS)
        try:
            self._ni = NetworkInterface(
                node=node, nodes=nodes, endpoints=endpoints, contexts=contexts,
                tlb_entries=tlb_entries, asid_bits=asid_bits, lines=lines, tx_lines=tx_lines,
                rx_lines=rx_lines, merges=merges, lock_entries=lock_entries,
                lock_waiters=lock_waiters, lock_count_bits=lock_count_bits,
                send_buffering=send_buffering, queue_depth=queue_depth)
        except (TypeError, ValueError):
            silence_unused(self)
            raise
        self._user = AxiLiteTarget(addr_width=asid_bits + MMIO_ADDR_BITS)
        self._bridge = UserPageBridge(asid_bits=asid_bits)
        self._os = AxiLiteTarget(addr_width=PAGE_BITS)
        members = {
            **axi_lite_members("s_axil", asid_bits + MMIO_ADDR_BITS),
            **axi_lite_members("s_axil_os", PAGE_BITS),
            "irq": Out(1),
            **axis_members("m_axis_link", AXI_DATA_BITS, source=True, last=True,
                           dest_bits=NODE_BITS),
            **axis_members("s_axis_link", AXI_DATA_BITS, source=False, last=True),
        }
        for name, (from_ni, layout) in CORE_STREAMS.items():
            members.update(axis_members(f"{'m' if from_ni else 's'}_axis_{name}",
                                        axis_data_bits(layout), source=from_ni))
        members.update(axi_members("m_axi", PA_BITS))
        super().__init__(members)

    @property
    def ni(self):
        return self._ni

    def elaborate(self, platform):
        m = Module()

        # Submodules: the NI, the two register pages' AXI4-Lite targets and the user pages' bridge
        # to the NI's MMIO port.
        m.submodules.ni = ni = self._ni
        m.submodules.user = user = self._user
        m.submodules.user_bridge = bridge = self._bridge
        m.submodules.os = os = self._os
        _wire(m, self, "s_axil_", user, "axil_")
        _wire(m, self, "s_axil_os_", os, "axil_")

        # The AXI responses other than OKAY the memory port got (read in the OS page).
        axi_errors = Signal(32, name="axi_errors")
        wiring.connect(m, user.request, bridge.access)
        wiring.connect(m, bridge.answer, user.answer)
        wiring.connect(m, bridge.cpu_request, ni.cpu_request)
        wiring.connect(m, ni.cpu_response, bridge.cpu_response)
        self._os_page(m, ni, os, axi_errors)
        self._link(m, ni)
        for name, (from_ni, _) in CORE_STREAMS.items():
            port = getattr(ni, name)
            axis = _Port(self, f"{'m' if from_ni else 's'}_axis_{name}")
            if from_ni:
                m.d.comb += [axis.tdata.eq(port.payload), axis.tvalid.eq(port.valid),
                             port.ready.eq(axis.tready)]
            else:
                m.d.comb += [port.payload.eq(axis.tdata), port.valid.eq(axis.tvalid),
                             axis.tready.eq(port.ready)]
        self._memory(m, ni, axi_errors)
        return m

    def _os_page(self, m, ni, os, axi_errors):
        """Decode the OS page: the command's words, its issue, the events and the counters
        (``axi_errors`` among them)."""
        access = os.request.payload
        offset = access.addr
        word = Signal(range(OS_COMMAND_WORDS), name="os_command_word")
        command = Signal(ni_os_command_layout(self._asid_bits), name="os_command")
        width = len(command.as_value())
        command_bits = Signal(OS_COMMAND_WORDS * AXI_DATA_BITS, name="os_command_bits")
        m.d.comb += [
            word.eq(offset[3:3 + (OS_COMMAND_WORDS - 1).bit_length()]),
            command_bits.eq(command.as_value()),
            ni.os_command.payload.eq(command),
        ]
        # What the access is: a whole word (all strobes for a write), and which register.
        whole = Signal(name="os_whole_word")
        m.d.comb += whole.eq((offset[:3] == 0) & (~access.write | (access.strb == 0xFF)))
        is_command = Signal(name="os_is_command")
        is_issue = Signal(name="os_is_issue")
        m.d.comb += [
            is_command.eq(offset < OsReg.COMMAND.value + 8 * OS_COMMAND_WORDS),
            is_issue.eq(offset == OsReg.ISSUE.value),
        ]
        events = ((OsReg.FAULT, ni.fault), (OsReg.LOCK_EVENT, ni.lock_os),
                  (OsReg.NOTIFY_EVENT, ni.notify_os))
        read_data = Signal(AXI_DATA_BITS, name="os_read_data")
        readable = Signal(name="os_readable")
        takes = Signal(name="os_takes_event")
        # (the answer, registered: the access leaves as it is answered)
        answered = Signal(name="os_answered")
        answer = Signal(AxiLiteAnswer, name="os_answer")
        issue = Signal(name="os_issue")
        m.d.comb += [
            issue.eq(os.request.valid & ~answered & whole & access.write & is_issue),
            ni.os_command.valid.eq(issue),
            os.request.ready.eq(~answered & (~issue | ni.os_command.ready)),
            os.answer.valid.eq(answered),
            os.answer.payload.eq(answer),
            self.irq.eq(ni.fault.valid | ni.lock_os.valid | ni.notify_os.valid),
        ]
        command_words = [command_bits[AXI_DATA_BITS * index:AXI_DATA_BITS * (index + 1)]
                         for index in range(OS_COMMAND_WORDS)]
        with m.If(is_command):
            m.d.comb += readable.eq(1)
            with m.Switch(word):
                for index, bits in enumerate(command_words):
                    with m.Case(index):
                        m.d.comb += read_data.eq(bits)
        for register, port in events:
            event = port.payload.as_value()
            bits = Cat(Mux(port.valid, event, 0), C(0, 2 * AXI_DATA_BITS - 1 - len(event)),
                       port.valid)
            for index in range(OS_EVENT_WORDS):
                with m.If(offset == register.value + 8 * index):
                    m.d.comb += [readable.eq(1),
                                 read_data.eq(bits.word_select(index, AXI_DATA_BITS))]
                    if index == OS_EVENT_WORDS - 1:
                        m.d.comb += port.ready.eq(takes)
        with m.If(offset == OsReg.PENDING.value):
            m.d.comb += [readable.eq(1),
                         read_data.eq(Cat(ni.fault.valid, ni.lock_os.valid, ni.notify_os.valid))]
        for index, name in enumerate(OS_COUNTERS):
            value = axi_errors if name == "axi_errors" else getattr(ni, f"count_{name}")
            with m.If(offset == OsReg.COUNTERS.value + 8 * index):
                m.d.comb += [readable.eq(1), read_data.eq(value)]
        taken = Signal(name="os_taken")
        ok = Signal(name="os_ok")
        m.d.comb += [
            taken.eq(os.request.valid & os.request.ready),
            ok.eq(whole & Mux(access.write, is_command | is_issue, readable)),
            takes.eq(taken & ok & ~access.write),
        ]
        with m.If(taken):
            m.d.sync += [answered.eq(1), answer.error.eq(~ok),
                         answer.data.eq(Mux(ok & ~access.write, read_data, 0))]
            with m.If(ok & access.write & is_command):
                m.d.sync += command.as_value().eq(
                    Cat(*(Mux(word == index, access.data, bits)
                          for index, bits in enumerate(command_words)))[:width])
        with m.Elif(os.answer.ready):
            m.d.sync += answered.eq(0)

    def _link(self, m, ni):
        """Carry the link on AXI4-Stream, the destination on every beat."""
        out = _Port(self, "m_axis_link")
        into = _Port(self, "s_axis_link")
        first = Signal(init=1, name="link_first")
        destination = Signal(NODE_BITS, name="link_destination")
        offset = MessageHeader["dst_node"].offset
        flit = ni.link_tx.payload
        m.d.comb += [
            out.tdata.eq(flit.data), out.tlast.eq(flit.last), out.tvalid.eq(ni.link_tx.valid),
            ni.link_tx.ready.eq(out.tready),
            out.tdest.eq(Mux(first, flit.data[offset:offset + NODE_BITS], destination)),
            ni.link_rx.payload.data.eq(into.tdata), ni.link_rx.payload.last.eq(into.tlast),
            ni.link_rx.valid.eq(into.tvalid), into.tready.eq(ni.link_rx.ready),
        ]
        with m.If(out.tvalid & out.tready):
            m.d.sync += first.eq(out.tlast)
            with m.If(first):
                m.d.sync += destination.eq(flit.data[offset:offset + NODE_BITS])

    def _memory(self, m, ni, axi_errors):
        """Carry the NI's memory reads and write-backs on the AXI4 master, a line a burst."""
        axi = _Port(self, "m_axi")
        line_shift = LINE_BYTES.bit_length() - 1
        for prefix in ("aw", "ar"):
            m.d.comb += [getattr(axi, f"{prefix}len").eq(LINE_WORDS - 1),
                         getattr(axi, f"{prefix}size").eq(_SIZE_8_BYTES),
                         getattr(axi, f"{prefix}burst").eq(_BURST_INCR)]

        # Reads: the address register takes the merges' reads first, then the DMA's; the data
        # goes back by ID.
        with m.If(~axi.arvalid | axi.arready):
            m.d.comb += ni.mem_read.ready.eq(1)
            m.d.comb += ni.dma_read.ready.eq(~ni.mem_read.valid)
            m.d.sync += axi.arvalid.eq(ni.mem_read.valid | ni.dma_read.valid)
            with m.If(ni.mem_read.valid):
                m.d.sync += [axi.arid.eq(_MERGE_ID),
                             axi.araddr.eq(ni.mem_read.payload.addr << line_shift)]
            with m.Else():
                m.d.sync += [axi.arid.eq(_DMA_ID),
                             axi.araddr.eq(ni.dma_read.payload.addr << line_shift)]
        for port, identity in ((ni.dma_data, _DMA_ID), (ni.mem_read_data, _MERGE_ID)):
            m.d.comb += [port.payload.data.eq(axi.rdata), port.payload.last.eq(axi.rlast)]
            with m.If(axi.rid == identity):
                m.d.comb += [port.valid.eq(axi.rvalid), axi.rready.eq(port.ready)]

        # Writes: a line's address goes out (a register) as its first beat comes; its beats follow
        # at once. The next line's address waits until the one before is taken.
        line_open = Signal(name="write_line_open")
        beat = ni.mem_write.payload
        m.d.comb += [
            axi.awid.eq(0), axi.wdata.eq(beat.data), axi.wstrb.eq(0xFF), axi.wlast.eq(beat.last),
            axi.wvalid.eq(ni.mem_write.valid & line_open),
            ni.mem_write.ready.eq(axi.wready & line_open),
            axi.bready.eq(1),
        ]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += axi.awvalid.eq(0)
        with m.If(ni.mem_write.valid & ~line_open & ~axi.awvalid):
            m.d.sync += [axi.awvalid.eq(1), axi.awaddr.eq(beat.addr << line_shift),
                         line_open.eq(1)]
        with m.If(axi.wvalid & axi.wready & axi.wlast):
            m.d.sync += line_open.eq(0)
        with m.If((axi.bvalid & (axi.bresp != AxiResp.OKAY))
                  | (axi.rvalid & axi.rready & (axi.rresp != AxiResp.OKAY))):
            m.d.sync += axi_errors.eq(axi_errors + 1)


class NetworkInterfacesAXI(wiring.Component):
    """``nodes`` :class:`NetworkInterfaceAXI` side by side, node ``i``'s ports prefixed
    ``n<i>_``: the top of testbenches that join the links themselves.

    Parameters
    ----------
    nodes : int
        Nodes, 2 to 16; node ``i`` is number ``i`` of ``nodes``.
    endpoints, contexts, asid_bits, lines, tx_lines, rx_lines, lock_entries, lock_waiters : int
        As for :class:`NetworkInterfaceAXI` (every node the same).
    """

    def __init__(self, *, nodes=2, endpoints=8, contexts=4, asid_bits=8, lines=64, tx_lines=16,
                 rx_lines=48, lock_entries=32, lock_waiters=32):
        self._nodes = check_int(self, "nodes", nodes, 2, 16)
        self._shells = []
        try:
            for index in range(nodes):
                self._shells.append(NetworkInterfaceAXI(
                    node=index, nodes=nodes, endpoints=endpoints, contexts=contexts,
                    asid_bits=asid_bits, lines=lines, tx_lines=tx_lines, rx_lines=rx_lines,
                    lock_entries=lock_entries, lock_waiters=lock_waiters))
        except (TypeError, ValueError):
            silence_unused(self)
            for shell in self._shells:
                silence_unused(shell)
            raise
        members = {}
        for index, shell in enumerate(self._shells):
            for path, member in shell.signature.members.flatten():
                members[f"n{index}_{path[0]}"] = member
        super().__init__(members)

    @property
    def nodes(self):
        return self._nodes

    def elaborate(self, platform):
        m = Module()
        for index, shell in enumerate(self._shells):
            m.submodules[f"node{index}"] = shell
            _wire(m, self, f"n{index}_", shell)
        return m
