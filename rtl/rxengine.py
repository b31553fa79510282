from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (ENDPOINT_BITS, NODE_BITS, RX_COUNTERS, EndpointEntry, Flit, MissAnswer,
                      NiFault, RxFillBeat, RxLineHint, RxLineRequest, TlbResponse, Completion,
                      tlb_lookup_layout)
from .packetqueue import QUEUED_JOBS, STAGING_WORDS, PacketQueue
from .params import check_int, check_node, node_strap
from .receiver import FAULT_COUNTERS, MessageReceiver
from .translator import RxTranslator
from .writer import SETTLING_JOBS, MessageWriter

__all__ = ["RxEngine", "QUEUED_JOBS", "STAGING_WORDS", "SETTLING_JOBS"]


class RxEngine(wiring.Component):
    """The receive engine of the NI: checks each arriving message and writes it into memory.

    It follows the "Receiving" section of :mod:`rtl.ni`, with four parts joined with
    :func:`~amaranth.lib.wiring.connect`, each with the rules it keeps:

    * a :class:`rtl.receiver.MessageReceiver` (submodule ``receiver``) takes one message at a time
      from ``flits``, up to its ``last`` flit whatever is wrong with it, runs the CRC-32, checks
      the message (**Checks**: BAD_CRC, TRUNCATED, BAD_HEADER, BAD_ENDPOINT, in this order), acts
      on its translation (RX_PERMISSION, RX_KEY, RX_MISS and the OS's ``miss_answer``,
      RX_REJECTED) and reports the faults on ``fault``, in arrival order among themselves;
    * a :class:`rtl.translator.RxTranslator` (``translator``) looks the message's pages up on
      ``tlb_request`` as its VA flit comes in, so that the answers arrive while the payload does;
    * a :class:`rtl.packetqueue.PacketQueue` (``queue``) keeps the payloads in a staging RAM of
      two largest payloads (2 * :data:`STAGING_WORDS` words, a circular buffer) and the
      messages that passed (or were rejected) as jobs behind the writer's: the oldest in a
      register, up to :data:`QUEUED_JOBS` behind it;
    * a :class:`rtl.writer.MessageWriter` (``writer``) writes the jobs in arrival order, two at a
      time in its two stages (a job's lines announced while the words of the one before go out),
      while the next messages come in: waits while the job's ring is full (reception goes on
      until the staging RAM or the job queue is full, then holds the link), writes the payload's
      lines and the completion entry through the MessageBuffer (``rx_line``, ``rx_data``), and,
      once the MessageBuffer has released the entry's line (``lines_done``), advances the ring's
      tail and offers the completion, with up to :data:`SETTLING_JOBS` jobs in its stages or so
      settling. A later message's fault may come before an earlier message's completion.

    **Timing.** ``flits`` takes one flit per cycle while a message streams in. It holds a first
    flit while lookups of the message before are still in flight, and the first payload flit
    until the staging RAM has room for the payload the header asks for (at most
    :data:`STAGING_WORDS` words). It takes nothing from the trailer until the message is
    discarded or has become a job: while its translation, fault report or miss answer is
    pending, and while the job queue is full. The writer writes jobs that follow each other in
    ``n + 4`` cycles each for ``n`` payload words (the payload's and the entry's words one a
    cycle, a job's announcements made while the words of the one before go out), so that with
    ``rx_line``, ``rx_data`` and ``completion`` always ready back-to-back messages come in at the
    link's rate: 8-byte messages at 5 flits per 5 cycles, messages of 2 KiB at 260 flits per
    260. For an 8-byte message whose page hit, with the writer idle, those ports always ready
    and each line released in the cycle after its last word, the payload line is announced at
    the second clock edge after the trailer's transfer (the message's verdict is registered in
    the queue), and ``completion`` is valid from the eighth edge after it (taken at the ninth).

    Parameters
    ----------
    node : int or None
        This NI's node number, 0 to 15; None: it comes in on the strap port ``node_id``.
    endpoints : int
        Endpoints of the node, 1 to 16.
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to 16 (the endpoint table's ASID is zero-extended or
        truncated to it).

    Members
    -------
    flits : In(stream.Signature(Flit))
        The link into the node; taken one per cycle while a message streams in (see Timing).
    endpoints : In(EndpointEntry).array(endpoints)
        The NI's endpoint table (registers outside the engine).
    ring_head : In(16).array(endpoints)
        Each endpoint's consumer index, written by user code.
    ring_tail : Out(16).array(endpoints)
        Each endpoint's producer index: advanced by one in the cycle after a completion
        entry's line is released.
    ring_reset : In(endpoints)
        A one-cycle pulse per endpoint: its tail goes to 0 at the clock edge (before the advance
        of a line released in the same cycle, which is lost).
    tlb_request : Out(stream.Signature(tlb_lookup_layout(asid_bits)))
        Lookups, driven from a register; at most two per message (a retry repeats them).
    tlb_response : In(stream.Signature(TlbResponse))
        One answer per lookup, in order; always ready.
    fault : Out(stream.Signature(NiFault))
        One per discarded message, per miss (RX_MISS) and per rejection (RX_REJECTED); ``node``
        is the source node, ``endpoint`` the destination endpoint, ``asid`` its ASID (0 for an
        endpoint the NI does not have), ``va`` the page for translation faults (else 0). The
        engine waits while it is not taken.
    miss_answer : In(stream.Signature(MissAnswer))
        Taken only after an RX_MISS fault has been taken, one per miss.
    rx_line : Out(stream.Signature(RxLineRequest))
    rx_data : Out(stream.Signature(RxFillBeat))
        The writes to the MessageBuffer, as above; any backpressure is fine.
    rx_next : Out(RxLineHint)
        The line the next announcement will name, where the engine knows it from its registers
        (the MessageBuffer's "Announcing ahead"): the job's next line while its payload's lines
        are announced, else the first payload line of the next job (queued, or the message coming
        in once the queue is empty). Not ``valid`` when that is an entry's line.
    lines_done : In(1)
        The MessageBuffer's ``rx_done``: high in each cycle it releases a line announced on
        ``rx_line`` (in announcement order): the core reads the line's new words from then on.
    completion : Out(stream.Signature(Completion))
        To the Notifier, once the entry's line is released, for messages with ``notify`` set.
    count_delivered, count_rejected, count_bad_crc, count_truncated, count_bad_header, \
    count_bad_endpoint, count_key_faults, count_permission_faults, count_misses, \
    count_ring_full_cycles : Out(32)
        Counters (wrapping), from :data:`rtl.layouts.RX_COUNTERS`.
    """

    def __init__(self, *, node=0, endpoints=8, asid_bits=8):
        self._node = check_node(self, node, (1 << NODE_BITS) - 1)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        # The parts, built once.
        self._receiver = MessageReceiver(node=node, endpoints=endpoints, asid_bits=asid_bits)
        self._translator = RxTranslator(asid_bits=asid_bits)
        self._queue = PacketQueue()
        self._writer = MessageWriter(endpoints=endpoints)
        super().__init__({
            "flits": In(stream.Signature(Flit)),
            "endpoints": In(EndpointEntry).array(endpoints),
            "ring_head": In(16).array(endpoints),
            "ring_tail": Out(16).array(endpoints),
            "ring_reset": In(endpoints),
            "tlb_request": Out(stream.Signature(tlb_lookup_layout(asid_bits))),
            "tlb_response": In(stream.Signature(TlbResponse)),
            "fault": Out(stream.Signature(NiFault)),
            "miss_answer": In(stream.Signature(MissAnswer)),
            "rx_line": Out(stream.Signature(RxLineRequest)),
            "rx_next": Out(RxLineHint),
            "rx_data": Out(stream.Signature(RxFillBeat)),
            "lines_done": In(1),
            "completion": Out(stream.Signature(Completion)),
            **{f"count_{name}": Out(32) for name in RX_COUNTERS},
            **node_strap(self._node),
        })

    @property
    def node(self):
        return self._node

    @property
    def endpoint_count(self):
        """The ``endpoints`` parameter (the name ``endpoints`` is the endpoint table's port)."""
        return self._endpoints

    @property
    def asid_bits(self):
        return self._asid_bits

    @property
    def receiver(self):
        return self._receiver

    @property
    def translator(self):
        return self._translator

    @property
    def queue(self):
        return self._queue

    @property
    def writer(self):
        return self._writer

    def elaborate(self, platform):
        m = Module()

        # Submodules: the parts, in the order a message meets them.
        m.submodules.receiver = receiver = self._receiver
        m.submodules.translator = translator = self._translator
        m.submodules.queue = queue = self._queue
        m.submodules.writer = writer = self._writer

        # The parts joined: the receiver asks the translator, fills the queue, which feeds the
        # writer.
        wiring.connect(m, receiver.translate, translator.request)
        m.d.comb += receiver.translation.eq(translator.translation)
        wiring.connect(m, receiver.staging, queue.staging)
        wiring.connect(m, receiver.message, queue.message)
        m.d.comb += queue.incoming_line.eq(receiver.next_line)
        wiring.connect(m, queue.job, writer.job)
        wiring.connect(m, queue.words, writer.words)
        m.d.comb += writer.next_line.eq(queue.next_line)

        # The engine's ports, each a part's.
        for name in ("flits", "miss_answer"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(receiver, name))
        wiring.connect(m, receiver.fault, wiring.flipped(self.fault))
        wiring.connect(m, translator.tlb_request, wiring.flipped(self.tlb_request))
        wiring.connect(m, wiring.flipped(self.tlb_response), translator.tlb_response)
        for name in ("rx_line", "rx_data", "completion"):
            wiring.connect(m, getattr(writer, name), wiring.flipped(getattr(self, name)))
        m.d.comb += [
            writer.ring_reset.eq(self.ring_reset),
            writer.lines_done.eq(self.lines_done),
            self.rx_next.eq(writer.rx_next),
            *(port.eq(entry) for port, entry in zip(receiver.endpoints, self.endpoints)),
            *(port.eq(head) for port, head in zip(writer.ring_head, self.ring_head)),
            *(tail.eq(port) for tail, port in zip(self.ring_tail, writer.ring_tail)),
            *(getattr(self, f"count_{name}").eq(getattr(receiver, f"count_{name}"))
              for name in FAULT_COUNTERS.values()),
            *(getattr(self, f"count_{name}").eq(getattr(writer, f"count_{name}"))
              for name in ("delivered", "rejected", "ring_full_cycles")),
        ]
        if self._node is None:
            m.d.comb += receiver.node_id.eq(self.node_id)
        return m
