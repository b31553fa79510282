"""The network interface of one node, and the system of n nodes.

This docstring is the NI's contract: the RTL (:class:`NetworkInterface`, with
:class:`rtl.txengine.TxEngine` and :class:`rtl.rxengine.RxEngine`), the transaction-level
reference NI (:mod:`behavioral.refni`) and the system testbench all follow it.

User-level MMIO (the ``cpu`` port)
    Endpoint ``e`` has the 4 KiB user page at MMIO address ``e << 12``; the registers are the
    :class:`rtl.layouts.UserReg` offsets, every access a 64-bit word. An access is checked
    against the endpoint table: a disabled endpoint, one the NI does not have, or an offset with
    no register answers BAD_ADDRESS; an ASID other than the endpoint's answers FOREIGN_ASID and
    reports a FOREIGN_ASID fault to the OS; neither changes anything. A read of a write-only
    register (DESCRIPTOR, PAYLOAD, ARM_*) answers BAD_ADDRESS. A write into the TX slot
    (DESCRIPTOR, PAYLOAD) or to DOORBELL while the endpoint's send is busy answers SLOT_BUSY and
    changes nothing. One access is taken per cycle; its answer follows in order.

Sending
    User code writes the :data:`rtl.layouts.SendDescriptor` into DESCRIPTOR and, for PIO, the
    payload into PAYLOAD (word ``i`` of the payload at ``PAYLOAD + 8 i``), then writes DOORBELL.
    The doorbell sets STATUS.busy. The TX engine takes doorbelled endpoints in round-robin order
    and checks the descriptor: a length that is not a multiple of 8 or is above
    MAX_PAYLOAD_BYTES (BAD_LENGTH), a destination node not in the system (BAD_NODE) or a flag
    bit other than DMA and NOTIFY (BAD_FLAGS) refuses the send: STATUS shows busy low and the
    error, nothing is sent, and the slot may be written again at once. (Checked in that order.)
    A DMA send first translates every page of ``local_va .. local_va + length - 1`` (at most two)
    with the TX port of the NI TLB, in the doorbell's ASID, asking for local read: a permission
    fault refuses the send (DMA_FAULT, and a TX_PERMISSION fault to the OS); a miss reports a
    TX_MISS fault and waits for the OS's MISS_ANSWER for TX: retry (after a fill) looks up again,
    reject refuses the send (DMA_REJECTED). No flit leaves before every page is translated. The
    payload is then read a line at a time, at most ``send_buffering`` lines ahead of the wire:
    each line is probed in the MessageBuffer (``ni_read``; a buffered line is the newest copy)
    and, on a miss, read from the node's memory (``dma_read`` / ``dma_data``).
    The message is the header (``src_node`` the NI's node, ``src_endpoint`` the sending endpoint,
    ``seq`` a counter per destination node starting at 0, ``notify`` the NOTIFY flag, the rest
    from the descriptor), the payload and the CRC-32 trailer (:class:`rtl.framing.MessageFramer`).
    When the trailer has left, STATUS shows busy low, error NONE, and ``sent`` one more.

Receiving
    The RX engine takes messages from ``link_rx`` into a staging RAM of two maximum payloads,
    computing the CRC as it goes, while the messages before are written out (each message
    reserves the room its header asks for before its payload comes in); it drains every message
    up to its ``last``
    flit, whatever is wrong with it. It discards, counts and reports (one fault each, no memory
    written, no completion): a CRC mismatch (BAD_CRC); ``last`` before the length in the header
    says, or no ``last`` where it should be (TRUNCATED: the engine drops flits until ``last``);
    a header not for this node, not a PUT or with a bad length (BAD_HEADER); an endpoint the NI
    does not have or that is disabled (BAD_ENDPOINT). The checks come in that order, so a message
    whose CRC is wrong is BAD_CRC whatever its header says.
    A good message's pages (``remote_va .. remote_va + length - 1``, at most two; none for a
    message with no payload) are translated with the RX port of the NI TLB in the endpoint's ASID
    with the message's key, asking for remote write: a permission fault (RX_PERMISSION) or key
    fault (RX_KEY) discards the message, counted and reported, no memory written, no completion.
    A miss reports RX_MISS and waits for the OS's MISS_ANSWER for RX: retry looks up again;
    reject writes a completion entry with status REJECTED (landing_va the remote VA) and no
    payload, and reports RX_REJECTED.
    Before anything is written the engine waits while the endpoint's ring is full (tail - head
    equals the ring's size, counted mod 2**16), holding the message; the messages behind it come
    in until the staging RAM or the writer's queue is full, then the link is held. Messages are
    written out, completed and notified in the order they came in; a later message's fault may be
    reported before an earlier message's completion.
    Then it writes the payload a line at a time through the MessageBuffer (``rx_line`` /
    ``rx_data``: each line announced with the words the message covers), then the completion
    entry (:data:`rtl.layouts.CompletionEntry`) at ``ring_pa + COMPLETION_BYTES * (tail mod
    size)``, and, once the MessageBuffer has released the message's lines (the core's caches
    have given them up, so it reads the payload and the entry and no stale copy), advances the
    tail, while the next message is written. If the header's ``notify`` is set, the Notifier
    then gets a :data:`rtl.layouts.Completion` naming the endpoint and the entry's VA
    (``ring_va`` + the same offset), and applies the endpoint's armed mode.

Notification arming
    ARM_LOCK, ARM_HANDLER and ARM_STACK hold the values a mode needs; writing ARM_MODE writes the
    Notifier's endpoint entry: that mode, those values, and the endpoint table's ASID and thread.

Privileged interface (the ``os`` port, :func:`rtl.layouts.ni_os_command_layout`)
    WRITE_ENDPOINT writes an endpoint table entry (:data:`rtl.layouts.EndpointEntry`); its ring
    restarts empty (head and tail 0) and the Notifier's entry goes back to NONE. TLB passes a
    command to the NI TLB. WRITE_CONTEXT writes a context into the Notifier's context table and
    the lock table's residency. MISS_ANSWER answers the oldest miss of the TX or RX engine. TUNE
    sets a :class:`rtl.layouts.NiTunable`: the DMA lines fetched ahead, the rate of the link into
    the node; a value out of its range changes nothing. A
    command naming an endpoint or context the NI does not have changes nothing. After a TLB
    command the port takes nothing until the NI TLB has applied it, so that the lookup a
    MISS_ANSWER retries sees the FILL sent before it.
    Faults come out of the ``fault`` port (:data:`rtl.layouts.NiFault`), events for the OS from
    the lock table (``lock_os``) and the Notifier (``notify_os``).
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.back import verilog
from amaranth.lib.wiring import In, Out

from .arbiter import RoundRobinArbiter
from .fabric import Fabric
from .faults import LinkFaultInjector
from .layouts import (ASID_BITS, MAX_NODES, NODE_BITS, NOTIFIER_COUNTERS, RX_COUNTERS,
                      TX_COUNTERS, CohResponse, Flit, HandlerReturn, LineBeat, LineRequest,
                      LinkFault, LockOsEvent, LockReleased, LockRequest, LockResponse,
                      MemWriteBeat, MmioRequest, MmioResponse, NiFault, NotifyEvent,
                      NotifyOsEvent, WordBeat, ni_os_command_layout)
from .locktable import LockTable
from .mmio import MmioDecoder
from .msgbuf import MessageBuffer
from .notifier import Notifier
from .osport import OsPort
from .params import check_int, check_node, node_strap, silence_unused
from .rxengine import RxEngine
from .tlb import NITLB
from .txengine import TxEngine

__all__ = ["NetworkInterface", "System"]


def _node_signature(*, endpoints, contexts, asid_bits):
    """Return the members of one NI other than its links (what a :class:`System` exposes)."""
    return {
        "cpu_request": In(stream.Signature(MmioRequest)),
        "cpu_response": Out(stream.Signature(MmioResponse)),
        "os_command": In(stream.Signature(ni_os_command_layout(asid_bits))),
        "fault": Out(stream.Signature(NiFault)),
        "lock_os": Out(stream.Signature(LockOsEvent)),
        "notify_os": Out(stream.Signature(NotifyOsEvent)),
        "lock_request": In(stream.Signature(LockRequest)),
        "lock_response": Out(stream.Signature(LockResponse)),
        "lock_released": Out(stream.Signature(LockReleased)),
        "notify": Out(stream.Signature(NotifyEvent)),
        "handler_return": In(stream.Signature(HandlerReturn)),
        "dma_read": Out(stream.Signature(LineRequest)),
        "dma_data": In(stream.Signature(WordBeat)),
        "coh_req": Out(stream.Signature(LineRequest)),
        "coh_resp": In(stream.Signature(CohResponse)),
        "mc_lookup": In(stream.Signature(LineRequest)),
        "mc_data": Out(stream.Signature(LineBeat)),
        "mem_write": Out(stream.Signature(MemWriteBeat)),
        "mem_read": Out(stream.Signature(LineRequest)),
        "mem_read_data": In(stream.Signature(WordBeat)),
        **{f"count_tx_{name}": Out(32) for name in TX_COUNTERS},
        **{f"count_rx_{name}": Out(32) for name in RX_COUNTERS},
        **{f"count_notify_{name}": Out(32) for name in NOTIFIER_COUNTERS},
    }


class NetworkInterface(wiring.Component):
    """The NI of one node: TX and RX engines, NI TLB, MessageBuffer, LockTable and Notifier
    behind a user-level MMIO port and a privileged OS port (the module docstring is the
    contract).

    The :class:`rtl.mmio.MmioDecoder` (``mmio``) takes one ``cpu_request`` per cycle and answers
    it on ``cpu_response`` at the next edge, in order; it waits (``cpu_request`` not ready) while
    the answer before is not taken, or while the unit a request needs cannot take it (the TX
    engine's doorbell, the Notifier's command port for ARM_MODE, the fault port for a
    FOREIGN_ASID fault). It keeps the endpoint table. The :class:`rtl.osport.OsPort` (``osport``)
    takes one command at a time and holds the next until every unit it writes has taken the one
    before (WRITE_ENDPOINT: the endpoint table at once and the Notifier; WRITE_CONTEXT: the
    Notifier and the lock table). The OS port's Notifier commands go before ARM_MODE's. Faults
    of the RX engine, the TX engine and the MMIO decoder share ``fault`` in round-robin order.

    The MessageBuffer's TX staging port is not used: PIO slots and the DMA prefetch live in the
    TX engine's own RAM (:class:`rtl.txengine.TxEngine`), so ``tx_lines`` only shrinks the RX
    cache.

    Parameters
    ----------
    node : int or None
        This node's number, 0 to ``nodes - 1``; None: it comes in on the strap port
        ``node_id`` (``In(NODE_BITS)``), so that one module serves every node of a
        :class:`System`.
    nodes : int
        Nodes in the system, 2 to 16.
    endpoints : int
        Endpoints (user pages), 1 to 16.
    contexts : int
        SMT contexts of the core, 1 to 8.
    tlb_entries, asid_bits : int
        NI TLB size and ASID width.
    lines, tx_lines, rx_lines, merges : int
        MessageBuffer lines and merges from memory in flight (see
        :class:`rtl.msgbuf.MessageBuffer`).
    lock_entries, lock_waiters : int
        LockTable size.
    lock_count_bits : int
        Width of a notification lock's count of signals not yet waited for, 1 to 16. A SIGNAL
        to a lock whose count is full is held, and with it the Notifier and the RX engine's
        writer: software that consumes notified messages must WAIT once for each (see
        :mod:`behavioral.workload`), or its node stops taking messages once the count fills.
    send_buffering : int
        DMA lines fetched ahead of the wire, 1 to 16 (the most: the OS may TUNE it lower).
    queue_depth : int
        BRANCH arrivals the Notifier queues per endpoint.
    cycles_per_flit, max_cycles_per_flit : int
        The rate of the link into the node after reset, and the slowest the OS may TUNE it to
        (0: not tunable), as for :class:`rtl.fabric.Fabric`.

    Members
    -------
    link_tx : Out(stream.Signature(Flit))
    link_rx : In(stream.Signature(Flit))
    link_cycles_per_flit : Out(range(1, max(cycles_per_flit, max_cycles_per_flit) + 1))
        The rate the OS set for the link into the node (the System's Fabric takes it).
    cpu_request, cpu_response : the user-level MMIO port
    os_command : In(stream.Signature(ni_os_command_layout(asid_bits)))
    fault : Out(stream.Signature(NiFault))
    lock_os, notify_os : the lock table's and the Notifier's events for the OS
    lock_request, lock_response, lock_released : the core's lock operations
    notify, handler_return : the Notifier's events to the core and the core's answers
    dma_read, dma_data : the TX engine's reads of node memory
    coh_req, coh_resp, mc_lookup, mc_data, mem_write, mem_read, mem_read_data :
        the MessageBuffer's core-cache and memory ports
    count_tx_*, count_rx_*, count_notify_* : Out(32)
        The engines' and the Notifier's counters.
    """

    #: The user port's decoder (a variant may have another: see :mod:`tb.formal_ni`).
    mmio_class = MmioDecoder

    def __init__(self, *, node=0, nodes=2, endpoints=8, contexts=4, tlb_entries=32, asid_bits=8,
                 lines=64, tx_lines=16, rx_lines=48, merges=16, lock_entries=32,
                 lock_waiters=32, lock_count_bits=8, send_buffering=4, queue_depth=4,
                 cycles_per_flit=1, max_cycles_per_flit=0):
        self._nodes = check_int(self, "nodes", nodes, 2, MAX_NODES)
        self._node = check_node(self, node, nodes - 1)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 16)
        self._contexts = check_int(self, "contexts", contexts, 1, 8)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, ASID_BITS)
        self._params = dict(tlb_entries=tlb_entries, lines=lines, tx_lines=tx_lines,
                            rx_lines=rx_lines, merges=merges, lock_entries=lock_entries,
                            lock_waiters=lock_waiters, lock_count_bits=lock_count_bits,
                            send_buffering=send_buffering, queue_depth=queue_depth,
                            cycles_per_flit=cycles_per_flit,
                            max_cycles_per_flit=max_cycles_per_flit)
        # Build the parts once now, so that a bad parameter fails here, naming itself.
        try:
            for _, part in self._build_parts():
                silence_unused(part)
        except (TypeError, ValueError):
            silence_unused(self)
            raise
        slowest = max_cycles_per_flit or cycles_per_flit
        super().__init__({
            "link_tx": Out(stream.Signature(Flit)),
            "link_rx": In(stream.Signature(Flit)),
            "link_cycles_per_flit": Out(range(1, slowest + 1), init=cycles_per_flit),
            **_node_signature(endpoints=endpoints, contexts=contexts, asid_bits=asid_bits),
            **node_strap(self._node),
        })

    def _build_parts(self):
        """Yield ``(name, part)`` for each part, one at a time (so that, when one fails, those
        built before it can be marked)."""
        params = self._params
        yield "tx", TxEngine(node=self._node, nodes=self._nodes, endpoints=self._endpoints,
                             send_buffering=params["send_buffering"],
                             asid_bits=self._asid_bits)
        yield "rx", RxEngine(node=self._node, endpoints=self._endpoints,
                             asid_bits=self._asid_bits)
        yield "tlb", NITLB(entries=params["tlb_entries"], asid_bits=self._asid_bits)
        yield "msgbuf", MessageBuffer(lines=params["lines"], tx_lines=params["tx_lines"],
                                      rx_lines=params["rx_lines"], merges=params["merges"])
        yield "locktable", LockTable(entries=params["lock_entries"],
                                     waiters=params["lock_waiters"], contexts=self._contexts,
                                     count_bits=params["lock_count_bits"])
        yield "notifier", Notifier(endpoints=self._endpoints, contexts=self._contexts,
                                   queue_depth=params["queue_depth"])
        yield "mmio", self.mmio_class(node=self._node, endpoints=self._endpoints,
                                      contexts=self._contexts)
        yield "osport", OsPort(endpoints=self._endpoints, contexts=self._contexts,
                               asid_bits=self._asid_bits,
                               send_buffering=params["send_buffering"],
                               cycles_per_flit=params["cycles_per_flit"],
                               max_cycles_per_flit=params["max_cycles_per_flit"])

    @property
    def node(self):
        return self._node

    @property
    def nodes(self):
        return self._nodes

    @property
    def endpoints(self):
        return self._endpoints

    def elaborate(self, platform):
        m = Module()
        parts = dict(self._build_parts())
        for name, part in parts.items():
            m.submodules[name] = part
        tx, rx, tlb, msgbuf = parts["tx"], parts["rx"], parts["tlb"], parts["msgbuf"]
        locktable, notifier = parts["locktable"], parts["notifier"]
        mmio, osport = parts["mmio"], parts["osport"]
        if self._node is None:
            m.d.comb += [part.node_id.eq(self.node_id) for part in (tx, rx, mmio)]

        # The parts' ports that are the NI's.
        for outer, inner in (
                ("link_tx", tx.flits), ("link_rx", rx.flits),
                ("dma_read", tx.dma_read), ("dma_data", tx.dma_data),
                ("lock_os", locktable.os), ("notify_os", notifier.os),
                ("lock_request", locktable.request), ("lock_response", locktable.response),
                ("lock_released", locktable.released), ("notify", notifier.event),
                ("handler_return", notifier.handler_return),
                ("coh_req", msgbuf.coh_req), ("coh_resp", msgbuf.coh_resp),
                ("mc_lookup", msgbuf.mc_lookup), ("mc_data", msgbuf.mc_data),
                ("mem_write", msgbuf.mem_write), ("mem_read", msgbuf.mem_read),
                ("mem_read_data", msgbuf.mem_read_data),
                ("cpu_request", mmio.request), ("cpu_response", mmio.response),
                ("os_command", osport.command)):
            wiring.connect(m, wiring.flipped(getattr(self, outer)), inner)
        for prefix, names, part in (("tx", TX_COUNTERS, tx), ("rx", RX_COUNTERS, rx),
                                    ("notify", NOTIFIER_COUNTERS, notifier)):
            for name in names:
                m.d.comb += getattr(self, f"count_{prefix}_{name}").eq(
                    getattr(part, f"count_{name}"))

        # Between the parts: the engines translate through the TLB, write and probe the
        # MessageBuffer, and the Notifier signals the lock table; the OS port writes the endpoint
        # table, which the MMIO decoder keeps, and both write the Notifier's endpoints (below),
        # the OS port first. The MessageBuffer's TX staging is unused (see the class docstring).
        for source, sink in (
                (tx.tlb_request, tlb.tx_request), (tlb.tx_response, tx.tlb_response),
                (rx.tlb_request, tlb.rx_request), (tlb.rx_response, rx.tlb_response),
                (tx.ni_read, msgbuf.ni_read), (msgbuf.ni_data, tx.ni_data),
                (rx.rx_line, msgbuf.rx_line), (rx.rx_data, msgbuf.rx_data),
                (rx.completion, notifier.completion), (notifier.signal, locktable.signal),
                (osport.endpoint_write, mmio.endpoint_write), (osport.tlb, tlb.mgmt),
                (osport.residency, locktable.residency),
                (osport.tx_miss_answer, tx.miss_answer), (osport.rx_miss_answer, rx.miss_answer),
                (mmio.slot_write, tx.slot_write), (mmio.doorbell, tx.doorbell)):
            wiring.connect(m, source, sink)
        m.d.comb += [msgbuf.rx_next.eq(rx.rx_next), rx.lines_done.eq(msgbuf.rx_done),
                     rx.ring_reset.eq(mmio.ring_reset),
                     tx.buffering.eq(osport.send_buffering),
                     self.link_cycles_per_flit.eq(osport.link_cycles_per_flit),
                     msgbuf.tx_cmd.valid.eq(0), msgbuf.tx_alloc.ready.eq(0),
                     msgbuf.tx_data.ready.eq(0)]
        for index in range(self._endpoints):
            m.d.comb += [rx.endpoints[index].eq(mmio.endpoints[index]),
                         rx.ring_head[index].eq(mmio.ring_head[index]),
                         mmio.tx_status[index].eq(tx.status[index]),
                         mmio.ring_tail[index].eq(rx.ring_tail[index])]
        first, second = osport.notifier, mmio.arm
        m.d.comb += [
            notifier.command.valid.eq(first.valid | second.valid),
            notifier.command.payload.eq(Mux(first.valid, first.payload, second.payload)),
            first.ready.eq(notifier.command.ready),
            second.ready.eq(notifier.command.ready & ~first.valid),
        ]
        self._fault_merge(m, [rx.fault, tx.fault, mmio.fault])
        return m

    def _fault_merge(self, m, sources):
        """Faults of the RX engine, the TX engine and the MMIO decoder to ``fault``, in
        round-robin order."""
        m.submodules.fault_arbiter = arbiter = RoundRobinArbiter(count=len(sources))
        m.d.comb += [arbiter.requests.eq(Cat(source.valid for source in sources)),
                     self.fault.valid.eq(arbiter.valid),
                     arbiter.advance.eq(self.fault.ready)]
        for index, source in enumerate(sources):
            with m.If(arbiter.grant == index):
                m.d.comb += self.fault.payload.eq(source.payload)
            m.d.comb += source.ready.eq(self.fault.ready & arbiter.valid
                                        & (arbiter.grant == index))


class System(wiring.Component):
    """``nodes`` network interfaces joined by a :class:`rtl.fabric.Fabric`: one Verilog top.

    NI ``i`` is node ``i``; its link ports go to the Fabric's port ``i``, every other port is
    the system's ``node[i]`` (Verilog ports ``node__<i>__<port>__...``).

    :meth:`to_verilog` writes the NI once, as the module ``<name>_ni`` whose node number comes in
    on the strap port ``node_id``, and instantiates it ``nodes`` times as ``ni0``, ``ni1``, ...;
    the links between the NIs and the Fabric are the top's wires ``ni<i>__link_tx__*`` and
    ``ni<i>__link_rx__*``. A simulator then compiles one NI however many nodes there are.
    Elaborated for the Amaranth simulator or for synthesis, each NI is its own submodule with its
    node number built in.

    Parameters
    ----------
    nodes : int
        2 to 16.
    link_latency, cycles_per_flit, max_cycles_per_flit : int
        The Fabric's link pipeline stages and rate limiter; with ``max_cycles_per_flit``, each
        node's OS sets the rate of the link into its node (TUNE CYCLES_PER_FLIT).
    link_faults : bool
        Put a :class:`rtl.faults.LinkFaultInjector` on each link from the Fabric to an NI (a test
        system: ``smtni soak``), its command port the system's ``link_fault[i]``; the link into
        the injector is ``ni<i>__from_fabric``.
    **ni_params
        Every parameter of :class:`NetworkInterface` but ``node`` and ``nodes``.

    Members
    -------
    node : array of the NI ports but the links, one per node
    fabric_dropped : Out(32)
        Flits the Fabric dropped (misrouted; see :class:`rtl.fabric.Fabric`).
    link_fault : array of In(stream.Signature(LinkFault)), one per node
        With ``link_faults`` only: the fault for the next message into NI ``i``.
    """

    def __init__(self, *, nodes=2, link_latency=2, cycles_per_flit=1, max_cycles_per_flit=0,
                 link_faults=False, endpoints=8, contexts=4, tlb_entries=32, asid_bits=8,
                 lines=64, tx_lines=16, rx_lines=48, merges=16, lock_entries=32,
                 lock_waiters=32, lock_count_bits=8, send_buffering=4, queue_depth=4):
        self._nodes = check_int(self, "nodes", nodes, 2, MAX_NODES)
        self._link_faults = bool(check_int(self, "link_faults", int(link_faults), 0, 1))
        ni_params = dict(nodes=nodes, endpoints=endpoints, contexts=contexts,
                         tlb_entries=tlb_entries, asid_bits=asid_bits, lines=lines,
                         tx_lines=tx_lines, rx_lines=rx_lines, merges=merges,
                         lock_entries=lock_entries,
                         lock_waiters=lock_waiters, lock_count_bits=lock_count_bits,
                         send_buffering=send_buffering, queue_depth=queue_depth,
                         cycles_per_flit=cycles_per_flit,
                         max_cycles_per_flit=max_cycles_per_flit)
        self._fabric_params = dict(nodes=nodes, link_latency=link_latency,
                                   cycles_per_flit=cycles_per_flit,
                                   max_cycles_per_flit=max_cycles_per_flit)
        self._ni_params = ni_params
        try:
            for part in self._build_parts():
                silence_unused(part)
        except (TypeError, ValueError):
            silence_unused(self)
            raise
        members = _node_signature(endpoints=endpoints, contexts=contexts, asid_bits=asid_bits)
        super().__init__({
            "node": Out(wiring.Signature(members)).array(nodes),
            "fabric_dropped": Out(32),
            **({"link_fault": In(stream.Signature(LinkFault)).array(nodes)}
               if self._link_faults else {}),
        })

    @property
    def nodes(self):
        return self._nodes

    def _build_parts(self):
        """Yield the Fabric, then each node's NI, one at a time (so that, when one fails, those
        built before it can be marked)."""
        yield Fabric(**self._fabric_params)
        for index in range(self._nodes):
            yield NetworkInterface(node=index, **self._ni_params)

    def to_verilog(self, name="system"):
        """Return the Verilog of the system with the top module ``name``: the NI module
        ``<name>_ni`` (written once), then the top and the Fabric."""
        ni = NetworkInterface(node=None, **self._ni_params)
        ni_text = verilog.convert(ni, name=f"{name}_ni", emit_src=False)
        top_text = verilog.convert(self, name=name, platform=_SharedNI(f"{name}_ni"),
                                   emit_src=False)
        return ni_text + top_text

    def elaborate(self, platform):
        m = Module()
        fabric, *nis = self._build_parts()
        m.submodules.fabric = fabric
        m.d.comb += self.fabric_dropped.eq(fabric.dropped)
        for index, ni in enumerate(nis):
            outer = self.node[index]
            if isinstance(platform, _SharedNI):
                silence_unused(ni)
                instance, link_tx, link_rx, rate = platform.instance(index, outer,
                                                                     self._ni_params)
                m.submodules[f"ni{index}"] = instance
                wiring.connect(m, link_tx, fabric.inputs[index])
                self._link_in(m, index, fabric.outputs[index], link_rx)
                self._link_rate(m, index, fabric, rate)
                continue
            m.submodules[f"ni{index}"] = ni
            wiring.connect(m, ni.link_tx, fabric.inputs[index])
            self._link_in(m, index, fabric.outputs[index], ni.link_rx)
            self._link_rate(m, index, fabric, ni.link_cycles_per_flit)
            for name, member in outer.signature.members.items():
                if member.is_port:
                    m.d.comb += getattr(outer, name).eq(getattr(ni, name))   # a counter
                else:
                    wiring.connect(m, wiring.flipped(getattr(outer, name)), getattr(ni, name))
        return m

    def _link_rate(self, m, index, fabric, rate):
        """The rate NI ``index`` set for the link into it, to the Fabric's output ``index`` (a
        fixed rate has no input there)."""
        if self._fabric_params["max_cycles_per_flit"]:
            m.d.comb += fabric.link_cycles_per_flit[index].eq(rate)

    def _link_in(self, m, index, fabric_out, link_rx):
        """Connect the Fabric's output ``index`` to NI ``index``'s link input ``link_rx``,
        through a fault injector in a system with ``link_faults``."""
        if not self._link_faults:
            wiring.connect(m, fabric_out, link_rx)
            return
        from_fabric = stream.Signature(Flit).create(path=(f"ni{index}", "from_fabric"))
        injector = m.submodules[f"link_fault{index}"] = LinkFaultInjector()
        wiring.connect(m, fabric_out, wiring.flipped(from_fabric))
        wiring.connect(m, from_fabric, injector.i)
        wiring.connect(m, injector.o, link_rx)
        wiring.connect(m, wiring.flipped(self.link_fault[index]), injector.command)


class _SharedNI:
    """The platform under which :meth:`System.to_verilog` elaborates the top: each NI becomes an
    instance of the one module ``module``, its node number tied to its strap."""

    def __init__(self, module):
        self.module = module

    def instance(self, index, outer, ni_params):
        """Return NI ``index`` as an :class:`~amaranth.hdl.Instance` bound to the system's ports
        ``outer``, and its link wires (``ni<index>__link_tx``, ``ni<index>__link_rx``,
        ``ni<index>__link_cycles_per_flit``) for the Fabric."""
        template = NetworkInterface(node=None, **ni_params)    # for its signature only
        silence_unused(template)
        link_tx = stream.Signature(Flit).create(path=(f"ni{index}", "link_tx"))
        link_rx = stream.Signature(Flit).flip().create(path=(f"ni{index}", "link_rx"))
        rate = Signal.like(template.link_cycles_per_flit, name=f"ni{index}__link_cycles_per_flit")
        bound = {"link_tx": link_tx, "link_rx": link_rx, "link_cycles_per_flit": rate,
                 "node_id": Const(index, NODE_BITS),
                 **{name: getattr(outer, name) for name in outer.signature.members}}
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for path, member, _ in template.signature.flatten(template):
            value = bound[path[0]]
            for step in path[1:]:
                value = value[step] if isinstance(step, int) else getattr(value, step)
            direction = "i" if member.flow == In else "o"
            ports[f"{direction}_{'__'.join(map(str, path))}"] = Value.cast(value)
        return Instance(self.module, **ports), link_tx, link_rx, rate
