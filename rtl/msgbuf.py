from amaranth import *
from amaranth.lib import enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import (FLIT_DATA_BITS, LINE_ADDR_BITS, LINE_WORDS, CohResponse, LineBeat,
                      LineRequest, MemWriteBeat, MsgBufTxOp, RxFillBeat, RxLineHint, RxLineRequest,
                      WordBeat, msgbuf_line_index_layout, msgbuf_tx_command_layout)
from .onehot import highest, index_of, lowest, set_indexed
from .params import check_int

__all__ = ["MessageBuffer", "LineState"]


class LineState(enum.Enum, shape=2):
    """What a message-buffer line holds."""
    #: Nothing; it can be allocated.
    FREE = 0
    #: A message being staged for sending (``tx_*`` ports).
    TX = 1
    #: An arriving line, allocated but not yet filled: invisible to readers.
    FILL = 2
    #: A filled arriving line, dirty, owned by the buffer, tagged by its physical line address;
    #: complete (readable) once its merge from memory, if it waits for one, is done.
    RX = 3


class _AgeQueue(Elaboratable):
    """The RX lines from oldest to newest: a collapsing queue of line indices.

    One push (at the tail) and one removal (from anywhere) per cycle. A removed index must be in
    the queue; the slots behind it move up by one.
    """

    def __init__(self, depth, lines):
        self.depth = depth
        self.push = Signal()
        self.push_line = Signal(range(lines))
        self.remove = Signal()
        self.remove_line = Signal(range(lines))
        self.count = Signal(range(depth + 1))
        self.slots = [Signal(range(lines), name=f"age{i}") for i in range(depth)]

    def elaborate(self, platform):
        m = Module()
        slots = self.slots
        # Slots at or behind the removed one take their successor's index.
        removed_here = Signal(self.depth)
        behind = Signal(self.depth)
        m.d.comb += removed_here.eq(Cat((slot == self.remove_line) & (index < self.count)
                                        for index, slot in enumerate(slots)))
        for index in range(self.depth):
            m.d.comb += behind[index].eq(self.remove & (removed_here[:index + 1] != 0))
        tail = Signal(range(self.depth + 1))
        m.d.comb += tail.eq(self.count - self.remove)
        m.d.sync += self.count.eq(self.count + self.push - self.remove)
        for index, slot in enumerate(slots):
            with m.If(self.push & (tail == index)):
                m.d.sync += slot.eq(self.push_line)
            if index + 1 < self.depth:
                with m.Elif(behind[index]):
                    m.d.sync += slot.eq(slots[index + 1])
        return m


class _MergeQueue(Elaboratable):
    """The lines waiting for the rest of their words from memory, in the order of their reads: a
    collapsing queue of line indices, each with the words that fills cover (which the memory's
    words must not overwrite).

    One push (at the tail, when ``count < depth``) and one pop (of the head) per cycle. ``cover``
    adds words to the covered words of ``cover_line``, if it is queued (it is at most once): a
    further fill into a line whose merge is pending.
    """

    def __init__(self, depth, lines):
        self.depth = depth
        self.push = Signal()
        self.push_line = Signal(range(lines))
        self.push_covered = Signal(LINE_WORDS)
        self.pop = Signal()
        self.cover = Signal()
        self.cover_line = Signal(range(lines))
        self.cover_words = Signal(LINE_WORDS)
        self.count = Signal(range(depth + 1))
        self.slots = [Signal(range(lines), name=f"merge{i}_line") for i in range(depth)]
        self.covered = [Signal(LINE_WORDS, name=f"merge{i}_covered") for i in range(depth)]

    def elaborate(self, platform):
        m = Module()
        tail = Signal(range(self.depth + 1))
        m.d.comb += tail.eq(self.count - self.pop)
        m.d.sync += self.count.eq(self.count + self.push - self.pop)
        for index in range(self.depth):
            # The entry this slot holds after the pop, and the words a fill adds to it.
            after = min(index + 1, self.depth - 1)
            line = Mux(self.pop, self.slots[after], self.slots[index])
            covered = Mux(self.pop, self.covered[after], self.covered[index])
            added = Mux(self.cover & (line == self.cover_line), self.cover_words, 0)
            with m.If(self.push & (tail == index)):
                m.d.sync += [self.slots[index].eq(self.push_line),
                             self.covered[index].eq(self.push_covered)]
            with m.Else():
                m.d.sync += [self.slots[index].eq(line), self.covered[index].eq(covered | added)]
        return m


class _WritePort(Elaboratable):
    """Who writes the data RAM this cycle. On the RX side the fill's words first, then the
    coherence answer's dirty words, then memory's. A cycle both RX and TX want goes to the side
    that lost the last such cycle (RX after reset); a cycle one side wants alone changes no turn."""

    RX_SIDE = ("fill", "coherence", "memory")

    def __init__(self, write, lines):
        self._write = write
        self.requesters = {}
        for name in (*self.RX_SIDE, "tx"):
            self.requesters[name] = (Signal(name=f"{name}_write"),
                                     Signal(range(lines * LINE_WORDS), name=f"{name}_write_addr"),
                                     Signal(FLIT_DATA_BITS, name=f"{name}_write_data"),
                                     Signal(name=f"{name}_write_granted"))

    def request(self, name, valid, addr, data):
        """Return the statements that ask for the port, and the signal that grants it."""
        want, want_addr, want_data, granted = self.requesters[name]
        return [want.eq(valid), want_addr.eq(addr), want_data.eq(data)], granted

    def elaborate(self, platform):
        m = Module()
        rx_side = [self.requesters[name] for name in self.RX_SIDE]
        tx = self.requesters["tx"]
        tx_first = Signal()
        rx_wants = Cat(want for want, _, _, _ in rx_side).any()
        m.d.comb += tx[3].eq(tx[0] & (~rx_wants | tx_first))
        earlier = tx[3]
        for want, _, _, granted in rx_side:
            m.d.comb += granted.eq(want & ~earlier)
            earlier = earlier | want
        with m.If(rx_wants & tx[0]):
            m.d.sync += tx_first.eq(~tx_first)
        for want, addr, data, granted in (*rx_side, tx):
            with m.If(granted):
                m.d.comb += [self._write.en.eq(1), self._write.addr.eq(addr),
                             self._write.data.eq(data)]
        return m


class _Client(enum.Enum, shape=2):
    """Who the line reader serves."""
    LOOKUP = 0      # mc_lookup: an L1 miss of the core
    WRITE_BACK = 1  # capacity: the oldest RX line goes to memory
    NI_READ = 2     # the NI reading a buffered line


class MessageBuffer(wiring.Component):
    """Message buffer: staging for outgoing messages and a cache of arriving ones, beside the L2.

    ``lines`` lines of :data:`rtl.layouts.LINE_BYTES` in a data RAM (one write port, a read port
    for transmission and one for the line reader) with a tag and a :class:`LineState` per line.
    At most ``tx_lines`` lines are staging sends at a time, at most ``lines - tx_lines`` are RX
    lines, so neither side can starve the other of lines.

    **TX staging.** ``tx_alloc`` offers a free line (the lowest-numbered) while fewer than
    ``tx_lines`` are staged; taking it makes the line TX. ``tx_cmd`` writes a word, reads one
    (answered on ``tx_data`` one cycle after the transfer, in order) or frees the line. An
    operation on a line that is not TX changes nothing (a READ answers zero) and counts in
    ``bad_tx_ops``.

    **RX fill.** An arriving line is announced on ``rx_line`` (physical line address and the
    words the fill writes) and its words follow on ``rx_data``, in announcement order. The tag
    compare of an announcement is registered: it is taken one cycle after it is offered at the
    earliest, unless ``rx_next`` named it ahead (below), when it may be taken as it is offered.
    Up to :attr:`IN_FLIGHT` lines are *in flight* (announced, not yet complete) at a time, each
    on its way through the same steps in order, so that one line's coherence round trip overlaps
    the fills of the others:

    * a line already RX is reused (merged into), with no coherence request: the buffer owns it;
    * otherwise a line is allocated (the highest-numbered free one), and ``coh_req`` asks the
      core's caches to give it up (the requests go out in announcement order, while earlier
      ones are still unanswered; with none waiting, in the cycle the announcement is taken).
      ``coh_resp`` answers each in turn, with the line's data if a cache held it dirty; that
      data is kept under the words the fill writes, whichever comes first. A partial fill of a
      line no cache held dirty asks memory for the rest (``mem_read``) and goes on without
      waiting: see merging, below;
    * the fill's words are taken as soon as the line is announced, whether or not its
      coherence answer is in;
    * a line whose fill and coherence answer are both in becomes RX, the newest in age (one a
      cycle, in announcement order, so that a line announced after another is never readable
      before it);
    * an announcement waits while a line of its address is in flight, while :attr:`IN_FLIGHT`
      lines are, and, when the buffer holds ``lines - tx_lines`` RX lines, for a write-back.

    **Announcing ahead.** ``rx_next`` names the line of the next announcement: of the one after
    the announcement offered now, or, with none offered, of the next one. The buffer compares
    its tags with it in that cycle (the registered compare), and takes the announcement in the
    cycle it is offered, if it names that line and the one before was taken (or none was
    offered). So a writer that knows its next line keeps up a line a cycle. Without a
    ``valid`` hint an announcement is taken a cycle after it is offered at the earliest, as
    above; a hint that names another line costs one more cycle, nothing else.

    ``rx_done`` marks each line's release, in announcement order: its words are in, and the
    caches have given it up (their answer has begun; the caches' side of the bargain, below) or
    it needed no coherence request. From then on a core that reads the line misses in its
    caches, and its probe waits for the line to complete (see below): it reads the fill's
    words, never a stale copy. So the writer knows when the core may be told of a message.

    **Merging.** A line whose words come from memory after its fill is *merging* until they are
    in: memory's words (``mem_read_data``, the answers in the order of the reads) are written
    only where no fill of the line writes, so whichever comes first, the fill's words stay. A
    further announcement of a merging line reuses it as any RX line, and the merge then leaves
    its words alone too. Up to ``merges`` reads are outstanding; a further partial line
    waits, and the lines in flight behind it, until the oldest merge ends (its fill goes on). A
    line is complete when it is RX and not merging: probes of a merging line wait (as for a line
    in FILL, below) and so does its write-back, so that no one reads memory's stale words in
    place of the fill's, or a line with words missing.

    The buffer orders a line's coherence request against the probes of that line: a probe taken
    before the request's transfer misses (the caches still own the line), one taken after waits
    until the line is complete (RX, and a merge, if any, has ended), and then hits. The caches'
    side of the bargain: once an answer begins, no cache holds the line; a request for a line
    whose miss has already had its probe taken is answered after that miss completes (and takes
    the line away again); a miss whose probe has not been taken yet is no reason to wait, as its
    probe will hit.

    **Probes.** ``mc_lookup`` (the core's L1 misses) and ``ni_read`` (the NI reading memory)
    are taken one cycle after they are offered at the earliest (the tag compare is registered
    while a probe waits), and answer from the cycle after their transfer: a miss as one beat, a
    hit with the line's words, one per cycle while taken. A ``mc_lookup`` hit hands the line
    over: when its last word is taken, the line is FREE. ``ni_read`` leaves it.

    **Write-back.** The oldest RX line is written to memory on ``mem_write`` (once it is complete:
    a merging line holds the write-backs behind it until its merge ends) when more than
    ``rx_lines`` lines are RX, or when all of RX's ``lines - tx_lines`` lines but one are in use
    (so that the next announcement finds a line without waiting), or when an announcement waits
    for a line. The line is FREE when its last word is taken, so memory has it before anyone can
    miss on it. ``rx_lines = 0`` turns the cache off: each arriving line goes to memory as soon
    as it is complete.

    The line reader serves one probe or write-back at a time and starts the next in the cycle
    the last word of one is taken, so write-backs keep up with a line per 8 cycles. Its order of
    priority: a write-back that an announcement waits for, ``mc_lookup``, any other write-back,
    ``ni_read``. The write port serves arriving words, then coherence data, then memory data,
    alternating with TX writes when both wait; so a merge waits while words arrive.

    Parameters
    ----------
    lines : int
        Lines in the buffer, 4 to 256.
    tx_lines : int
        Most lines staging sends at a time, 1 to ``lines - 2``.
    rx_lines : int
        RX lines kept before the oldest is written back, 0 to ``lines - tx_lines``.
    merges : int
        Most lines waiting for their merge from memory at a time, 1 to 32 (fewer if RX has fewer
        lines): the reads in flight must cover memory's latency at the rate partial lines
        arrive, or arriving lines wait (see Merging).

    Members
    -------
    tx_alloc : Out(stream.Signature(msgbuf_line_index_layout(lines)))
    tx_cmd : In(stream.Signature(msgbuf_tx_command_layout(lines)))
    tx_data : Out(stream.Signature(WordBeat))
    rx_line : In(stream.Signature(RxLineRequest))
    rx_next : In(RxLineHint)
        The line the next announcement will name, if ``valid`` (see Announcing ahead).
    rx_data : In(stream.Signature(RxFillBeat))
    coh_req : Out(stream.Signature(LineRequest))
    coh_resp : In(stream.Signature(CohResponse))
    mc_lookup : In(stream.Signature(LineRequest))
    mc_data : Out(stream.Signature(LineBeat))
    ni_read : In(stream.Signature(LineRequest))
    ni_data : Out(stream.Signature(LineBeat))
    mem_write : Out(stream.Signature(MemWriteBeat))
    mem_read : Out(stream.Signature(LineRequest))
    mem_read_data : In(stream.Signature(WordBeat))
    rx_done : Out(1)
        High in each cycle a line announced on ``rx_line`` is released (at most one a cycle, in
        announcement order; see RX fill).
    bad_tx_ops : Out(16)
        TX operations on lines that were not TX (saturating).
    """

    #: Most lines announced and not yet complete at a time (a power of two): enough that the
    #: coherence round trips of a message's next lines and of its completion entry's line
    #: overlap the fill of the line before.
    IN_FLIGHT = 4

    def __init__(self, *, lines=64, tx_lines=16, rx_lines=48, merges=16):
        self._lines = check_int(self, "lines", lines, 4, 256)
        self._tx_lines = check_int(self, "tx_lines", tx_lines, 1, lines - 2)
        self._rx_lines = check_int(self, "rx_lines", rx_lines, 0, lines - tx_lines)
        self._merges = check_int(self, "merges", merges, 1, 32)
        line_request = stream.Signature(LineRequest)
        line_beat = stream.Signature(LineBeat)
        super().__init__({
            "tx_alloc": Out(stream.Signature(msgbuf_line_index_layout(lines))),
            "tx_cmd": In(stream.Signature(msgbuf_tx_command_layout(lines))),
            "tx_data": Out(stream.Signature(WordBeat)),
            "rx_line": In(stream.Signature(RxLineRequest)),
            "rx_next": In(RxLineHint),
            "rx_data": In(stream.Signature(RxFillBeat)),
            "coh_req": Out(line_request),
            "coh_resp": In(stream.Signature(CohResponse)),
            "mc_lookup": In(line_request),
            "mc_data": Out(line_beat),
            "ni_read": In(line_request),
            "ni_data": Out(line_beat),
            "mem_write": Out(stream.Signature(MemWriteBeat)),
            "mem_read": Out(line_request),
            "mem_read_data": In(stream.Signature(WordBeat)),
            "rx_done": Out(1),
            "bad_tx_ops": Out(16),
        })
        self.state = Array(Signal(LineState, name=f"state{i}") for i in range(lines))
        self.tag = Array(Signal(LINE_ADDR_BITS, name=f"tag{i}") for i in range(lines))

    @property
    def lines(self):
        return self._lines

    @property
    def tx_lines(self):
        return self._tx_lines

    @property
    def rx_lines(self):
        return self._rx_lines

    @property
    def merges(self):
        return self._merges

    def elaborate(self, platform):
        m = Module()
        lines = self._lines
        m.submodules.ram = ram = Memory(shape=FLIT_DATA_BITS, depth=lines * LINE_WORDS, init=[])
        m.submodules.ages = ages = _AgeQueue(lines - self._tx_lines, lines)
        m.submodules.write = write = _WritePort(ram.write_port(), lines)
        m.submodules.merges = merges = _MergeQueue(min(self._merges, lines - self._tx_lines),
                                                   lines)
        self._states = {state: Signal(lines, name=f"lines_{state.name.lower()}")
                        for state in LineState}
        for state, vector in self._states.items():
            m.d.comb += vector.eq(Cat(line_state == state for line_state in self.state))
        reader = _ReaderView(lines)
        prep = _PrepView(lines)
        self._tx(m, write, ram.read_port())
        self._rx(m, write, ages, merges, reader, prep)
        self._reader(m, ram.read_port(), ages, reader, prep)
        return m

    # Shared per-line facts ----------------------------------------------------------------------

    def _in_state(self, state):
        """Return the vector of lines in ``state`` (one signal per state, made once)."""
        return self._states[state]

    # TX staging ---------------------------------------------------------------------------------

    def _tx(self, m, write, read):
        # Lines in TX, counted as they are allocated and freed.
        tx_used = Signal(range(self._tx_lines + 1))

        # Allocation: the lowest free line while the quota allows (a free line then exists:
        # RX never holds more than lines - tx_lines).
        free_line = lowest(m, self._in_state(LineState.FREE), "tx_free_line")
        m.d.comb += [
            self.tx_alloc.valid.eq(tx_used < self._tx_lines),
            self.tx_alloc.payload.line.eq(free_line),
        ]
        with m.If(self.tx_alloc.valid & self.tx_alloc.ready):
            set_indexed(m, self.state, free_line, LineState.TX)

        # Operations on staged lines. A READ's word is the read port's output register, held
        # while tx_data is not taken.
        command = self.tx_cmd.payload
        own = Signal()
        m.d.comb += own.eq((self._in_state(LineState.TX)
                            & Cat(command.line == line for line in range(self._lines))).any())
        statements, granted = write.request(
            "tx", self.tx_cmd.valid & (command.op == MsgBufTxOp.WRITE) & own,
            Cat(command.word, command.line), command.data)
        m.d.comb += statements
        with m.Switch(command.op):
            with m.Case(MsgBufTxOp.WRITE):
                m.d.comb += self.tx_cmd.ready.eq(~own | granted)
            with m.Case(MsgBufTxOp.READ):
                m.d.comb += self.tx_cmd.ready.eq(~self.tx_data.valid | self.tx_data.ready)
            with m.Default():
                m.d.comb += self.tx_cmd.ready.eq(1)
        taken = self.tx_cmd.valid & self.tx_cmd.ready
        reading = taken & (command.op == MsgBufTxOp.READ)
        zero = Signal()
        m.d.comb += [
            read.addr.eq(Cat(command.word, command.line)),
            read.en.eq(reading),
            self.tx_data.payload.data.eq(Mux(zero, 0, read.data)),
        ]
        with m.If(reading):
            m.d.sync += [
                self.tx_data.valid.eq(1),
                self.tx_data.payload.last.eq(command.word == LINE_WORDS - 1),
                zero.eq(~own),
            ]
        with m.Elif(self.tx_data.ready):
            m.d.sync += self.tx_data.valid.eq(0)
        allocated = self.tx_alloc.valid & self.tx_alloc.ready
        freed = taken & (command.op == MsgBufTxOp.FREE) & own
        m.d.sync += tx_used.eq(tx_used + allocated - freed)
        with m.If(freed):
            set_indexed(m, self.state, command.line, LineState.FREE)
        with m.If(taken & ~own & (self.bad_tx_ops != 0xFFFF)):
            m.d.sync += self.bad_tx_ops.eq(self.bad_tx_ops + 1)

    # RX: taking announcements, their coherence round trips, fills, and completion -------------

    def _rx(self, m, write, ages, merges, reader, prep):
        lines = self._lines
        flight = self.IN_FLIGHT
        rx_used = prep.rx_used

        # The lines in flight: announced, not yet complete. A ring of slots walked by six
        # pointers in announcement order (each one wider than an index, so that a full ring
        # differs from an empty one): the announcement (``tail``), the coherence request
        # (``asked``), the coherence answer and memory read (``answered``), the fill
        # (``filled``), the release (``released``) and completion (``head``).
        slot_line = Array(Signal(range(lines), name=f"flight{i}_line") for i in range(flight))
        slot_addr = Array(Signal(LINE_ADDR_BITS, name=f"flight{i}_addr") for i in range(flight))
        slot_words = Array(Signal(LINE_WORDS, name=f"flight{i}_words") for i in range(flight))
        # allocated (asks the caches), rather than an RX line reused; and not asked yet
        slot_fresh = Array(Signal(name=f"flight{i}_fresh") for i in range(flight))
        slot_unasked = Array(Signal(name=f"flight{i}_unasked") for i in range(flight))
        pointer = flight.bit_length()
        tail, asked, answered, filled, released, head = (
            Signal(pointer, name=f"flight_{name}")
            for name in ("tail", "asked", "answered", "filled", "released", "head"))

        def index(pointer_value):
            return pointer_value[:pointer - 1]

        def at(slots, pointer_value, name):
            """A signal holding ``slots`` at ``pointer_value``: an Array's element used as it is
            would be a multiplexer again in every expression it is part of."""
            value = Signal.like(slots[0], name=name)
            m.d.comb += value.eq(slots[index(pointer_value)])
            return value

        room = Signal(name="flight_room")
        # the fill of the line at ``filled`` ends, the answer step of the one at ``answered``
        fill_ends = Signal(name="flight_fill_ends")
        answer_ends = Signal(name="flight_answer_ends")
        m.d.comb += room.eq((tail - head)[:pointer] != flight)

        # Taking an announcement: reuse the RX line of the address unless the line reader has it,
        # or streams a line it will free, or may start a job this cycle (decided from the
        # reader's registers, its requests' valid and registered facts alone, so that neither
        # decision waits for the other's compare); wait while a line of the address is in
        # flight; else allocate, if RX may use another line.
        # The tag compare is registered: of the announcement while it waits (its payload is
        # stable), else of the hint for the next one, which is good for that one if it names the
        # hint's line (checked) and the announcement before was taken. An announcement not taken
        # when shown has its own address compared from then until it is taken (were the compare
        # to go back to the hint, it would be good only every other cycle, and a taker that is
        # ready only every other cycle could miss it for ever); the line after it waits a cycle. The decision ANDs it with
        # the lines' states now. Tags change only when an announcement allocates a line: the
        # compare of the hint made meanwhile has that line's bit compare the two addresses.
        # (Which address is compared is chosen from registers alone, off the decision's path.)
        announced = self.rx_line.payload
        hint = self.rx_next
        compared = Signal(lines, name="rx_compared")
        compared_valid = Signal(name="rx_compared_valid")
        from_hint = Signal(name="rx_compared_hint")
        hint_addr = Signal(LINE_ADDR_BITS, name="rx_hint_addr")
        fresh = Signal(name="rx_compared_fresh")
        use_hint = Signal(name="rx_compare_hint")
        compare_addr = Signal(LINE_ADDR_BITS, name="rx_compare_addr")
        tag_compare = Signal(lines, name="rx_tag_compare")
        retagged = Signal(lines, name="rx_retagged")
        match = Signal(lines, name="rx_match")
        m.d.comb += [
            fresh.eq(compared_valid & (~from_hint | (announced.addr == hint_addr))),
            use_hint.eq(hint.valid & ~(self.rx_line.valid & ~(compared_valid & from_hint))),
            compare_addr.eq(Mux(use_hint, hint.addr, announced.addr)),
            tag_compare.eq(Cat(tag == compare_addr for tag in self.tag)),
        ]
        m.d.sync += [
            compared.eq((tag_compare & ~retagged)
                        | Mux(compare_addr == announced.addr, retagged, 0)),
            compared_valid.eq(Mux(use_hint, ~self.rx_line.valid | self.rx_line.ready,
                                  self.rx_line.valid & ~self.rx_line.ready)),
            from_hint.eq(use_hint),
            hint_addr.eq(hint.addr),
        ]
        m.d.comb += match.eq(compared & (self._in_state(LineState.FILL)
                                         | self._in_state(LineState.RX)))
        match_line = index_of(m, match, "rx_match_line")
        free_line = highest(m, self._in_state(LineState.FREE), "rx_free_line")
        m.d.comb += retagged.eq(Mux(prep.allocates, Cat(free_line == line for line in range(lines)),
                                    0))
        reusable = Signal()
        may_allocate = Signal()
        m.d.comb += [
            reusable.eq((match & self._in_state(LineState.RX)).any()
                        & ~(reader.busy & (reader.line == match_line))
                        & ~reader.frees & ~reader.may_start),
            may_allocate.eq(rx_used < lines - self._tx_lines),
        ]
        # Registered: the write-back it asks for starts a cycle later, off the compare's path.
        m.d.sync += prep.waits_for_line.eq(room & self.rx_line.valid & fresh
                                           & ~match.any() & ~may_allocate)
        with m.If(room & fresh):
            m.d.comb += self.rx_line.ready.eq(Mux(match.any(), reusable, may_allocate))
        # A reused line leaves the age queue at the next clock edge: the queue's removal is then
        # off the compare's path. Meanwhile no write-back starts, so the line cannot be chosen.
        m.d.sync += [prep.unqueue.eq(0), prep.retagged.eq(0)]
        with m.If(self.rx_line.valid & self.rx_line.ready):
            m.d.sync += tail.eq(tail + 1)
            for slots, value in ((slot_addr, announced.addr), (slot_words, announced.words),
                                 (slot_fresh, ~match.any()), (slot_unasked, ~match.any())):
                set_indexed(m, slots, index(tail), value)
            with m.If(match.any()):
                # If the line is merging, its merge leaves these words alone too.
                m.d.comb += [merges.cover.eq(1), merges.cover_line.eq(match_line),
                             merges.cover_words.eq(announced.words)]
                m.d.sync += [prep.unqueue.eq(1), prep.unqueue_line.eq(match_line)]
                set_indexed(m, slot_line, index(tail), match_line)
                set_indexed(m, self.state, match_line, LineState.FILL)
            with m.Else():
                m.d.comb += prep.allocates.eq(1)
                set_indexed(m, slot_line, index(tail), free_line)
                set_indexed(m, self.state, free_line, LineState.FILL)
                set_indexed(m, self.tag, free_line, announced.addr)
                m.d.sync += prep.retagged.eq(Cat(free_line == line for line in range(lines)))

        # Lines allocated whose coherence request has not been taken yet (a bit per line): a
        # probe of one misses, as the caches still own it.
        unasked = [Signal(lines, name=f"flight{slot}_unasked_lines") for slot in range(flight)]
        for slot, vector in enumerate(unasked):
            m.d.comb += vector.eq(Mux(slot_unasked[slot],
                                      Cat(slot_line[slot] == line for line in range(lines)), 0))
        m.d.comb += prep.unasked.eq(Cat(*[Cat(vector[line] for vector in unasked).any()
                                          for line in range(lines)]))

        # Coherence requests, one per allocated line, in order; reused lines are passed over.
        # With every line before asked, the announcement taken now asks in the same cycle (its
        # line's round trip then starts with its announcement), if the caches take it then.
        with m.If(asked != tail):
            asked_fresh = at(slot_fresh, asked, "flight_asked_fresh")
            m.d.comb += [self.coh_req.valid.eq(asked_fresh),
                         self.coh_req.payload.addr.eq(at(slot_addr, asked, "flight_asked_addr"))]
            with m.If(~asked_fresh | self.coh_req.ready):
                m.d.sync += asked.eq(asked + 1)
                set_indexed(m, slot_unasked, index(asked), 0)
        with m.Elif(self.rx_line.valid & self.rx_line.ready):
            m.d.comb += [self.coh_req.valid.eq(~match.any()),
                         self.coh_req.payload.addr.eq(announced.addr)]
            with m.If(match.any() | self.coh_req.ready):
                m.d.sync += asked.eq(asked + 1)
                set_indexed(m, slot_unasked, index(tail), 0)
        m.d.sync += [
            prep.retagged_asked.eq(self.coh_req.valid & self.coh_req.ready & (asked == tail)),
            prep.retagged_addr.eq(announced.addr),
        ]

        # Coherence answers, in the order of the requests: a dirty copy's words are written only
        # where the fill does not write.
        answer_line = at(slot_line, answered, "flight_answer_line")
        answer_words = at(slot_words, answered, "flight_answer_words")
        answer_fresh = at(slot_fresh, answered, "flight_answer_fresh")
        answering = Signal(name="flight_answering")
        asking_memory = Signal(name="flight_asking_memory")
        dirty = Signal()
        # the answer (with its last beat, if this is it) leaves words to read from memory
        incomplete = Signal(name="flight_incomplete")
        coh_word = Signal(range(LINE_WORDS))
        m.d.comb += answering.eq((answered != asked) & answer_fresh
                                 & ~asking_memory)
        coh_beat = self.coh_resp.payload
        coh_keep = ~(answer_words & Cat(coh_word == word for word in range(LINE_WORDS))).any()
        statements, coh_granted = write.request(
            "coherence", answering & self.coh_resp.valid & coh_beat.dirty & coh_keep,
            Cat(coh_word, answer_line), coh_beat.data)
        m.d.comb += statements
        with m.If((answered != asked) & ~answer_fresh):
            m.d.comb += answer_ends.eq(1)
            m.d.sync += answered.eq(answered + 1)
        with m.If(answering):
            m.d.comb += self.coh_resp.ready.eq(~(coh_beat.dirty & coh_keep) | coh_granted)
            with m.If(self.coh_resp.valid & self.coh_resp.ready):
                m.d.sync += [coh_word.eq(coh_word + 1), dirty.eq(dirty | coh_beat.dirty)]
                with m.If(coh_beat.last):
                    m.d.sync += [coh_word.eq(0), dirty.eq(0)]
                    with m.If(~incomplete | (self.mem_read.valid & self.mem_read.ready)):
                        m.d.comb += answer_ends.eq(1)
                        m.d.sync += answered.eq(answered + 1)
                    with m.Else():
                        m.d.sync += asking_memory.eq(1)
        # A partial line no cache had dirty: its read from memory is queued (in the cycle of the
        # answer's last beat, or later if the queue is full or memory does not take it then),
        # and the line goes on without waiting; it is merging until memory's words are in.
        m.d.comb += [
            incomplete.eq(~coh_beat.dirty & ~dirty & ~answer_words.all()),
            self.mem_read.valid.eq((asking_memory | (answering & self.coh_resp.valid
                                                     & coh_beat.last & incomplete))
                                   & (merges.count != merges.depth)),
            self.mem_read.payload.addr.eq(at(slot_addr, answered, "flight_answer_addr")),
            merges.push_line.eq(answer_line), merges.push_covered.eq(answer_words),
            merges.push.eq(self.mem_read.valid & self.mem_read.ready),
        ]
        with m.If(asking_memory & self.mem_read.ready & self.mem_read.valid):
            m.d.comb += answer_ends.eq(1)
            m.d.sync += [asking_memory.eq(0), answered.eq(answered + 1)]

        # Merging: memory's words of the oldest read go where no fill of the line writes (its
        # covered words grow with each fill announced into it meanwhile). The last word makes
        # the line complete.
        mem_word = Signal(range(LINE_WORDS))
        mem_beat = self.mem_read_data.payload
        merge_head = merges.slots[0]
        mem_keep = ~(merges.covered[0] & Cat(mem_word == word for word in range(LINE_WORDS))).any()
        statements, mem_granted = write.request("memory", self.mem_read_data.valid & mem_keep,
                                                Cat(mem_word, merge_head), mem_beat.data)
        m.d.comb += [*statements, self.mem_read_data.ready.eq(~mem_keep | mem_granted)]
        with m.If(self.mem_read_data.valid & self.mem_read_data.ready):
            m.d.sync += mem_word.eq(mem_word + 1)
            with m.If(mem_beat.last):
                m.d.comb += [merges.pop.eq(1), prep.merge_ends.eq(1)]
                m.d.sync += mem_word.eq(0)
        m.d.sync += prep.merging.eq(
            (prep.merging | Mux(merges.push, Cat(answer_line == line for line in range(lines)), 0))
            & ~Mux(merges.pop, Cat(merge_head == line for line in range(lines)), 0))

        # Filling: the words of the lines in flight, in order, whether or not their coherence
        # answer is in (the answer's words go under the fill's, whichever comes first).
        filling = Signal(name="flight_filling")
        fill_line = Signal(range(lines), name="flight_fill_line")
        word = self.rx_data.payload
        m.d.comb += [filling.eq(filled != tail), fill_line.eq(at(slot_line, filled, "fill_at"))]
        statements, fill_granted = write.request("fill", filling & self.rx_data.valid,
                                                 Cat(word.word, fill_line), word.data)
        m.d.comb += [*statements, self.rx_data.ready.eq(filling & fill_granted)]
        with m.If(fill_ends):
            m.d.sync += filled.eq(filled + 1)

        # Completion, in announcement order: a line filled and answered becomes RX, the newest,
        # at the clock edge that ends the later of the two.
        done_line = at(slot_line, head, "flight_done_line")
        m.d.comb += fill_ends.eq(self.rx_data.valid & self.rx_data.ready & word.last)
        with m.If(((head != filled) | fill_ends) & ((head != answered) | answer_ends)):
            m.d.comb += [ages.push.eq(1), ages.push_line.eq(done_line)]
            m.d.sync += head.eq(head + 1)
            set_indexed(m, self.state, done_line, LineState.RX)

        # Release, in announcement order, at most one a cycle: a line filled whose caches have
        # given it up (its answer has begun: they hold no copy from then on) or that needed no
        # coherence. From then on the core reads it (a probe waits for it to complete) and
        # never a stale copy. The answer step may be at the line (``answered``), or past it;
        # ``released`` runs at most one line ahead of ``answered``.
        behind = Signal(pointer, name="flight_release_behind")
        answer_begun = Signal(name="flight_answer_begun")
        m.d.comb += [
            behind.eq(answered - released),
            answer_begun.eq(answer_ends | (answering & self.coh_resp.valid & self.coh_resp.ready)
                            | (coh_word != 0) | asking_memory),
        ]
        with m.If((released != tail) & ((released != filled) | fill_ends)
                  & (((behind != 0) & (behind <= flight)) | ((behind == 0) & answer_begun))):
            m.d.comb += self.rx_done.eq(1)
            m.d.sync += released.eq(released + 1)

    # The line reader: probes and write-backs ------------------------------------------------

    def _reader(self, m, read, ages, reader, prep):
        client = Signal(_Client)
        hit = Signal()
        addr = Signal(LINE_ADDR_BITS)
        word = Signal(range(LINE_WORDS + 1))
        out_valid = Signal()
        out_last = Signal()

        outputs = {_Client.LOOKUP: self.mc_data, _Client.WRITE_BACK: self.mem_write,
                   _Client.NI_READ: self.ni_data}
        out_ready = Signal()
        for who, port in outputs.items():
            with m.If(client == who):
                m.d.comb += [port.valid.eq(out_valid), out_ready.eq(port.ready)]
        for port in (self.mc_data, self.ni_data):
            m.d.comb += [port.payload.hit.eq(hit), port.payload.last.eq(out_last),
                         port.payload.data.eq(Mux(hit, read.data, 0))]
        m.d.comb += [self.mem_write.payload.addr.eq(addr),
                     self.mem_write.payload.data.eq(read.data),
                     self.mem_write.payload.last.eq(out_last)]
        taken = out_valid & out_ready
        done = taken & out_last

        # The last word taken: a handed-over or written-back line is free at the clock edge, and
        # the reader may start its next job in the same cycle.
        leaving = Signal(self._lines)
        with m.If(done):
            m.d.sync += reader.busy.eq(0)
            with m.If(hit & (client != _Client.NI_READ)):
                m.d.comb += [reader.removes.eq(1),
                             leaving.eq(Cat(reader.line == index
                                            for index in range(self._lines)))]
                set_indexed(m, self.state, reader.line, LineState.FREE)
        # The age queue's removal: the reader's, or a reused line's (never both: a line is reused
        # only while the reader cannot start a job, and a job that frees lasts 8 cycles).
        m.d.comb += [ages.remove.eq(reader.removes | prep.unqueue),
                     ages.remove_line.eq(Mux(prep.unqueue, prep.unqueue_line, reader.line))]
        # The age queue as it is after this cycle's removal.
        count = Signal.like(ages.count)
        head = Signal(range(self._lines))
        rx_used = Signal.like(prep.rx_used)
        m.d.sync += prep.rx_used.eq(prep.rx_used + prep.allocates - reader.removes)
        m.d.comb += [
            count.eq(ages.count - reader.removes),
            rx_used.eq(prep.rx_used - reader.removes),
            head.eq(Mux(reader.removes & (ages.slots[0] == reader.line),
                        ages.slots[1], ages.slots[0])),
        ]

        # What may start: a probe that hits an RX line, or misses (a line whose coherence request
        # has been sent and whose fill has not completed makes the probe wait); a write-back of
        # the oldest RX line, when RX holds more than rx_lines lines, or all its lines but one
        # are in use (so that an announcement finds a line), or an announcement waits for one.
        def classify(request, name):
            # As for announcements, the tag compare is registered while the probe waits; the
            # decision takes the lines' states of the moment. A tag written at the last edge is
            # left out: the compare saw the old tag of a free line, which may equal the probe's
            # address while another line holds that address; and a probe of the new address
            # misses, as the caches still own the line, unless its coherence request went out as
            # it was allocated: then the probe waits a cycle, for the compare of the new tag.
            compared = Signal(self._lines, name=f"{name}_compared")
            fresh = Signal(name=f"{name}_compared_fresh")
            match = Signal(self._lines, name=f"{name}_match")
            m.d.sync += [compared.eq(Cat(tag == request.payload.addr for tag in self.tag)),
                         fresh.eq(request.valid & ~request.ready)]
            m.d.comb += match.eq(compared & (self._in_state(LineState.FILL)
                                             | self._in_state(LineState.RX))
                                 & ~leaving & ~prep.retagged)
            line = index_of(m, match, f"{name}_line")
            rx_hit = Signal(name=f"{name}_hit")
            blocked = Signal(name=f"{name}_blocked")
            before_coherence = (match & prep.unasked).any()
            m.d.comb += [
                rx_hit.eq((match & self._in_state(LineState.RX) & ~prep.merging).any()),
                blocked.eq((match.any() & ~rx_hit & ~before_coherence)
                           | (prep.retagged_asked
                              & (request.payload.addr == prep.retagged_addr))),
            ]
            # A probe that waits for a merge stays blocked until the merge ends; registered, so
            # that it does not stop an announcement's reuse of a line all that while (see
            # reader.may_start).
            parked = Signal(name=f"{name}_parked")
            m.d.sync += parked.eq(request.valid & fresh & (match & prep.merging).any()
                                  & ~prep.merge_ends)
            return request.valid & fresh & ~blocked, rx_hit, line, request.valid & ~parked

        lookup_go, lookup_hit, lookup_line, lookup_may_go = classify(self.mc_lookup, "lookup")
        ni_go, ni_hit, ni_line, ni_may_go = classify(self.ni_read, "ni_read")
        write_back = Signal()
        capacity = self._lines - self._tx_lines
        head_merging = (prep.merging & Cat(head == line for line in range(self._lines))).any()
        m.d.comb += write_back.eq((count != 0) & ~prep.unqueue & ~head_merging
                                  & ((count > self._rx_lines) | (rx_used >= capacity - 1)
                                     | prep.waits_for_line))
        m.d.comb += [
            reader.frees.eq(reader.busy & hit & (client != _Client.NI_READ)),
            reader.may_start.eq((~reader.busy | done) & (lookup_may_go | ni_may_go | write_back)),
        ]
        start_client = Signal(_Client)
        start_hit = Signal()
        start_addr = Signal(LINE_ADDR_BITS)

        def start(who, line, line_hit, line_addr):
            m.d.comb += [reader.start.eq(1), start_client.eq(who), reader.start_line.eq(line),
                         start_hit.eq(line_hit), start_addr.eq(line_addr)]

        with m.If(~reader.busy | done):
            with m.If(prep.waits_for_line & write_back):
                start(_Client.WRITE_BACK, head, 1, self.tag[head])
            with m.Elif(lookup_go):
                m.d.comb += self.mc_lookup.ready.eq(1)
                start(_Client.LOOKUP, lookup_line, lookup_hit, self.mc_lookup.payload.addr)
            with m.Elif(write_back):
                start(_Client.WRITE_BACK, head, 1, self.tag[head])
            with m.Elif(ni_go):
                m.d.comb += self.ni_read.ready.eq(1)
                start(_Client.NI_READ, ni_line, ni_hit, self.ni_read.payload.addr)

        # A job's first beat shows the cycle after its start: a miss, or the line's first word,
        # read as the job starts. The other words follow out of the read port's output register,
        # which holds while its word is not taken.
        advance = reader.busy & hit & (word != LINE_WORDS) & (~out_valid | taken)
        m.d.comb += [
            read.addr.eq(Mux(reader.start, Cat(C(0, 3), reader.start_line),
                             Cat(word[:3], reader.line))),
            read.en.eq(Mux(reader.start, start_hit, advance)),
        ]
        with m.If(taken):
            m.d.sync += out_valid.eq(0)
        with m.If(reader.start):
            m.d.sync += [reader.busy.eq(1), client.eq(start_client), hit.eq(start_hit),
                         reader.line.eq(reader.start_line), addr.eq(start_addr),
                         word.eq(1), out_valid.eq(1), out_last.eq(~start_hit)]
        with m.Elif(advance):
            m.d.sync += [out_valid.eq(1), out_last.eq(word == LINE_WORDS - 1), word.eq(word + 1)]


class _ReaderView:
    """The line reader's signals that the RX side consults."""

    def __init__(self, lines):
        self.busy = Signal(name="reader_busy")
        self.line = Signal(range(lines), name="reader_line")
        self.start = Signal(name="reader_start")
        self.start_line = Signal(range(lines), name="reader_start_line")
        self.removes = Signal(name="reader_removes")
        self.frees = Signal(name="reader_frees")          # streams a line it will free
        self.may_start = Signal(name="reader_may_start")  # may start a job this cycle


class _PrepView:
    """The RX side's signals that the line reader consults."""

    def __init__(self, lines):
        #: Lines allocated whose coherence request has not been taken (a bit per line).
        self.unasked = Signal(lines, name="lines_unasked")
        #: Lines waiting for the rest of their words from memory (a bit per line): not complete.
        self.merging = Signal(lines, name="lines_merging")
        self.merge_ends = Signal(name="merge_ends")     # a line stops merging at the clock edge
        #: Lines in FILL or RX, counted as they are allocated and freed.
        self.rx_used = Signal(range(lines + 1), name="rx_used")
        self.allocates = Signal(name="prep_allocates")
        self.unqueue = Signal(name="prep_unqueue")      # a reused line leaves the age queue
        self.unqueue_line = Signal(range(lines), name="prep_unqueue_line")
        self.waits_for_line = Signal(name="prep_waits_for_line")
        #: The line whose tag the last clock edge wrote (one-hot): a compare registered at that
        #: edge saw its old tag.
        self.retagged = Signal(lines, name="prep_retagged")
        #: That line's coherence request was taken as it was allocated (at the last edge), and
        #: its address: a probe of it that the compare missed must wait, not miss.
        self.retagged_asked = Signal(name="prep_retagged_asked")
        self.retagged_addr = Signal(LINE_ADDR_BITS, name="prep_retagged_addr")
