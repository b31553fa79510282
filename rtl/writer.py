from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .layouts import (COMPLETION_BYTES, COMPLETION_WORDS, ENDPOINT_BITS, FLIT_BYTES,
                      FLIT_DATA_BITS, LINE_BYTES, LINE_WORDS, MAX_PAYLOAD_BYTES,
                      MAX_PAYLOAD_WORDS, PA_BITS, PAGE_BITS, VA_BITS, Completion, CompletionEntry,
                      CompletionStatus, RxFillBeat, RxJob, RxLineHint, RxLineRequest)
from .onehot import get_indexed
from .params import check_int

__all__ = ["MessageWriter", "Part", "STATES", "SETTLING_JOBS"]

#: The states of the writer's announcing side, in the order of their encoding (the stall report
#: of :mod:`tb.system_tb` names them from this): no job to announce; waiting for space in the
#: job's ring; announcing its payload lines and completion entry.
STATES = ("IDLE", "RING", "WRITE")

#: Jobs in the writer's two stages or written whose lines the MessageBuffer has not all released
#: yet: enough that the writer goes on with short messages while the earlier ones' last lines make
#: their coherence round trip.
SETTLING_JOBS = 4
#: Bits of the counts of lines announced and released: they differ by less than half the range
#: (the lines of the jobs settling and of the ones being written).
_LINE_COUNT_BITS = 10
#: Bits of a byte address below the word, below the line, and below a completion entry.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_ENTRY_SHIFT = COMPLETION_BYTES.bit_length() - 1

assert (SETTLING_JOBS + 1) * (MAX_PAYLOAD_BYTES // LINE_BYTES + 2) < 1 << (_LINE_COUNT_BITS - 1)
assert COMPLETION_BYTES & (COMPLETION_BYTES - 1) == 0, "entries must tile a line"
assert COMPLETION_BYTES <= LINE_BYTES, "an entry is written as one partial line"
assert MAX_PAYLOAD_BYTES <= 1 << PAGE_BITS, "a payload spans at most two pages"


class Part(enum.Enum, shape=2):
    """Which part of a job's writes a side of the writer (announcing lines, sending words) is
    at."""
    PAYLOAD = 0     # the payload's lines
    ENTRY = 1       # the completion entry, one partial line
    DONE = 2


#: A job written, until its lines are released: what advancing its tail and offering its
#: completion need.
_Settling = data.StructLayout({
    "endpoint": ENDPOINT_BITS,
    "notify":   1,
    "rejected": 1,
    "entry_va": VA_BITS,
    "lines":    _LINE_COUNT_BITS,   # the count of lines announced, its entry's included
})

#: How a job starts (the one held or the one offered): its completion entry's PA and slot, where
#: its writes begin (as :class:`_Announcer`'s ``part``, ``offset`` and ``left``), and its ring.
_Start = data.StructLayout({
    "entry_pa": PA_BITS,
    "slot":     16,
    "part":     Part,
    "offset":   PAGE_BITS + 1,
    "left":     range(MAX_PAYLOAD_WORDS + 1),
    "endpoint": ENDPOINT_BITS,
    "full":     1,
})

#: A job in one of the writer's two stages: the job, its entry's PA and slot in its ring (its VA
#: is added up as the job's record is written, off the start's path), and the count of lines
#: announced up to and including its entry's (once that is announced).
_Stage = data.StructLayout({
    "job":      RxJob,
    "entry_pa": PA_BITS,
    "slot":     16,
    "lines":    _LINE_COUNT_BITS,
})


class MessageWriter(wiring.Component):
    """Writes the RX engine's jobs into memory through the MessageBuffer, advances the rings'
    tails and offers the completions.

    Part of :class:`rtl.rxengine.RxEngine`: it takes jobs, in arrival order, from the engine's
    :class:`rtl.packetqueue.PacketQueue`, and their payload words from the queue's staging RAM.
    It is a pipeline of two stages, each on one job. The announcing side takes a job (its ring's
    check, its entry's slot, its first announcement) in the cycle after it has announced the
    entry's line of the one before, while the sending side still sends that one's words; it is
    at most one job ahead, so it waits until the sending side has gone on to its job (in the
    cycle before: the words the sending side has left of it cover the wait). The sending side goes on to the announcing side's job as the last word of its own job's entry is
    taken (or at once when idle). A job is taken only if the settling queue will have room for
    its record, beside those of the jobs in the two stages.

    **Ring.** While the job's ring is full (``ring_tail - ring_head`` is ``2 ** ring_log2`` or
    more, mod 2**16, the tail counting the entries whose slot was given, to a job in either
    stage or settling, and whose tail has not advanced yet; the head as it was two cycles
    before, three for a job held) the announcing side holds the job, counting
    ``count_ring_full_cycles``, and takes no other; the sending side finishes its job. In the
    cycle after ``ring_reset``, its ring is full.

    **Writing.** Each payload line (none for a rejected job) is announced on ``rx_line``
    (physical line address ``(ppn << 12 | offset) >> 6``, the payload landing at ``remote_va &
    ~7``; the words the message covers in that line), and its words follow on ``rx_data`` in
    increasing word order, ``last`` on the line's final one; announcements run ahead of the
    words, and a line's words are offered only after its announcement has been taken. Then the
    completion entry (:data:`rtl.layouts.CompletionEntry`, ``landing_va`` the ``remote_va`` as
    sent, ``stamp`` the job's) goes the same way as one partial line at ``ring_pa +
    COMPLETION_BYTES * (tail mod size)`` (``ring_pa`` taken as COMPLETION_BYTES aligned).

    **Settling.** The writer goes on with the next job while the MessageBuffer releases the lines
    (``lines_done``, one per line in announcement order): once it has released the entry's line,
    so that the core reads the payload and the entry and never stale copies, ``completion``
    offers the entry's VA (``ring_va`` + the same offset) from that cycle (the cycle of
    ``lines_done`` for the entry's line), if the job's ``notify`` is set, in arrival order; the
    tail advances, and the job is counted (``count_delivered`` or ``count_rejected``), in the
    cycle after. Up to :data:`SETTLING_JOBS` jobs are in the two stages or settling.

    **Timing.** With ``rx_line`` and ``rx_data`` always ready, a job taken by an idle writer has
    its first line announced in the cycle after and its words sent one a cycle from the cycle
    after that; jobs that follow each other take ``n + 4`` cycles of ``rx_data`` each (``n``
    payload words and the entry's 4), their announcements made while the words of the job
    before go out, with no cycle between them.

    Parameters
    ----------
    endpoints : int
        Endpoints of the node, 1 to 16.

    Members
    -------
    job : In(stream.Signature(RxJob))
        The next job; ready when the announcing side takes one, as above.
    words : In(stream.Signature(FLIT_DATA_BITS))
        The payload words of the jobs taken, in order, one stream: the sending side's job's,
        then the next job's; taken one per word sent on ``rx_data``.
    next_line : In(RxLineHint)
        The first payload line of the job the writer would take next (:class:`PacketQueue`).
    ring_head : In(16).array(endpoints)
        Each endpoint's consumer index, written by user code.
    ring_tail : Out(16).array(endpoints)
        Each endpoint's producer index: advanced by one in the cycle after a completion entry's
        line is released.
    ring_reset : In(endpoints)
        A one-cycle pulse per endpoint: its tail goes to 0 at the clock edge (before the advance
        of a line released in the same cycle, which is lost).
    rx_line : Out(stream.Signature(RxLineRequest))
    rx_data : Out(stream.Signature(RxFillBeat))
        The writes to the MessageBuffer, as above; any backpressure is fine.
    rx_next : Out(RxLineHint)
        The line the next announcement will name, where the writer knows it from its registers
        (the MessageBuffer's "Announcing ahead"): the announcing side's job's next line while its
        payload's lines are announced, else ``next_line`` unless a job is held for ring space.
        Not ``valid`` when that is an entry's line.
    lines_done : In(1)
        The MessageBuffer's ``rx_done``: high in each cycle it releases a line announced on
        ``rx_line`` (in announcement order).
    completion : Out(stream.Signature(Completion))
        To the Notifier, once the entry's line is released, for jobs with ``notify`` set.
    count_delivered, count_rejected, count_ring_full_cycles : Out(32)
        Counters (wrapping).
    """

    def __init__(self, *, endpoints=8):
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        super().__init__({
            "job": In(stream.Signature(RxJob)),
            "words": In(stream.Signature(FLIT_DATA_BITS)),
            "next_line": In(RxLineHint),
            "ring_head": In(16).array(endpoints),
            "ring_tail": Out(16).array(endpoints),
            "ring_reset": In(endpoints),
            "rx_line": Out(stream.Signature(RxLineRequest)),
            "rx_next": Out(RxLineHint),
            "rx_data": Out(stream.Signature(RxFillBeat)),
            "lines_done": In(1),
            "completion": Out(stream.Signature(Completion)),
            "count_delivered": Out(32),
            "count_rejected": Out(32),
            "count_ring_full_cycles": Out(32),
        })

    @property
    def endpoints(self):
        return self._endpoints

    def elaborate(self, platform):
        m = Module()

        # Submodules: the records of the jobs written whose lines are not all released.
        m.submodules.settling = settling = SyncFIFO(width=_Settling.size, depth=SETTLING_JOBS)

        # The two stages, each with its job: the announcer's (``announcing``) and the sender's (``sending``), which takes the announcer's job
        # (``load``) once it is done with its own. ``queued``: the announcer's job is started and
        # not the sender's yet, so that the sender is at most one job behind.
        announcing = Signal(_Stage, name="announcing")
        sending = Signal(_Stage, name="sending")
        queued = Signal(name="queued")
        take = Signal(name="take")
        held = Signal(name="held")
        start = Signal(name="start")
        load = Signal(name="load")
        m.d.comb += [
            take.eq(self.job.valid & self.job.ready),
        ]
        # (loaded whenever the announcer may take a job, so that the job's valid, which comes
        # late, reaches few registers: in IDLE the announcer's job is not used)
        with m.If(self.job.ready):
            m.d.sync += announcing.job.eq(self.job.payload)

        # How the job starting (the one held, else the one offered) starts: worked out for both
        # side by side, the state choosing the answer last (off their paths). ``given``: per
        # ring, the tail counting the slots given; ``used``: whether the slots given and not
        # consumed fill the ring, as a bit per ring size (bit ``k``: a ring of ``2**k``), so
        # that a check is the choice of a bit.
        unsettled = [Signal(range(SETTLING_JOBS + 1), name=f"unsettled{index}")
                     for index in range(self._endpoints)]
        given = [Signal(16, name=f"given{index}") for index in range(self._endpoints)]
        used = [Signal(16, name=f"used{index}") for index in range(self._endpoints)]
        # The held job's answers are those worked out in the cycle before, from registers (no
        # other job starts meanwhile, so its ring only empties): in its first cycle held, and in
        # the cycle after a ring restart (which moves the slots given), full.
        starting = Signal(_Start, name="starting")
        held_start = Signal(_Start, name="held_start")
        offered_start = self._start(m, self.job.payload, given, used, "offered")
        held_now = self._start(m, announcing.job, given, used, "held")
        m.d.sync += [
            held_start.eq(held_now),
            held_start.full.eq(~held | held_now.full | self.ring_reset.any()),
        ]
        m.d.comb += starting.eq(Mux(held, held_start, offered_start))
        ring_full = starting.full

        # The two sides: announcing lines, and sending words once their line is announced (the
        # lines of the sender's job and of the announcer's, in order).
        lines_ahead = Signal(range(2 * (MAX_PAYLOAD_BYTES // LINE_BYTES + 2) + 1))
        announce = _Announcer(m, self, announcing.job, announcing.entry_pa)
        send = _Sender(m, self, sending.job, sending.entry_pa)
        entry_announced = Signal(name="entry_announced")
        m.d.comb += [
            self.rx_line.valid.eq(announce.part != Part.DONE),
            self.rx_data.valid.eq((lines_ahead != 0) & (send.part != Part.DONE)
                                  & ((send.part != Part.PAYLOAD) | self.words.valid)),
            entry_announced.eq(announce.taken & (announce.part == Part.ENTRY)),
        ]
        m.d.sync += lines_ahead.eq(lines_ahead + announce.taken - send.line_done)

        # Starting a job, on the announcer's side: its entry's slot, its first line.
        # The addresses and counts load in every cycle in which the announcer has no job in hand
        # (``between``), so that only the part waits for the start (the start comes late, from
        # the ring check).
        between = Signal(name="between")
        with m.If(between):
            m.d.sync += [
                announcing.entry_pa.eq(starting.entry_pa),
                announcing.slot.eq(starting.slot),
                announce.offset.eq(starting.offset),
                announce.word.eq(starting.offset[_WORD_SHIFT:_LINE_SHIFT]),
                announce.left.eq(starting.left),
            ]
        with m.If(start):
            m.d.sync += announce.part.eq(starting.part)

        # Loading it into the sender, as the sender's own job's entry's last word is taken (or
        # at once when the sender is idle).
        load_part, load_offset, load_left = _first_write(m, announcing.job, announcing.entry_pa,
                                                         "load")
        m.d.comb += load.eq(queued & ((send.part == Part.DONE) | send.entry_written))
        with m.If(load):
            m.d.sync += [sending.eq(announcing), send.part.eq(load_part),
                         send.offset.eq(load_offset), send.left.eq(load_left)]
        with m.If(start):
            m.d.sync += queued.eq(1)
        with m.Elif(load):
            m.d.sync += queued.eq(0)

        # The count of lines announced, up to and including its entry's, goes with each job: the
        # announcer may announce the next job's lines before the sender writes this one's entry.
        announced = Signal(_LINE_COUNT_BITS, name="lines_announced")
        m.d.sync += announced.eq(announced + announce.taken)
        with m.If(entry_announced):
            m.d.sync += announcing.lines.eq(announced + 1)
            with m.If(~queued | load):
                m.d.sync += sending.lines.eq(announced + 1)

        # The announcer's way: take a job when it has announced the last one's entry and the
        # sender has that one, if a record of it will fit in the settling queue beside the
        # sender's job's; wait for space in its ring; announce its lines.
        settling_room = Signal()
        full_wait = Signal()
        m.d.comb += settling_room.eq(settling.level + (send.part != Part.DONE) < SETTLING_JOBS)

        def start_when_space():
            with m.If(ring_full):
                m.d.comb += full_wait.eq(1)
                m.next = "RING"
            with m.Else():
                m.d.comb += start.eq(1)
                m.next = "WRITE"

        with m.FSM(name="write") as fsm:
            # (mentioned first here, so that the states are encoded in the order of STATES)
            at = {name: fsm.ongoing(name) for name in STATES}
            with m.State("IDLE"):
                with m.If(take):
                    start_when_space()
            with m.State("RING"):
                start_when_space()
            with m.State("WRITE"):
                with m.If(entry_announced):
                    m.next = "IDLE"
        m.d.comb += [
            self.job.ready.eq(at["IDLE"] & ~queued & settling_room),
            held.eq(at["RING"]),
            # (the announcer is done with its job in IDLE; the sender has it unless ``queued``)
            between.eq((at["IDLE"] & ~queued) | at["RING"]),
        ]
        # (counted a cycle late: the wait comes from the ring check)
        waited = Signal(name="full_waited")
        m.d.sync += [waited.eq(full_wait),
                     self.count_ring_full_cycles.eq(self.count_ring_full_cycles + waited)]

        # The line named ahead: the job's next one while its payload's are announced, else the
        # next job's first.
        with m.If(announce.part == Part.PAYLOAD):
            m.d.comb += [self.rx_next.valid.eq(1), self.rx_next.addr.eq(announce.next_addr)]
        with m.Elif(~held):
            m.d.comb += self.rx_next.eq(self.next_line)

        # The slot a job took is counted in the cycle after its start (``started``): the start
        # comes late, from the ring check, too late for a count of 16 bits per ring.
        started = Signal(name="started")
        started_endpoint = Signal(ENDPOINT_BITS, name="started_endpoint")
        m.d.sync += [started.eq(start), started_endpoint.eq(starting.endpoint)]
        self._settle(m, settling, sending, send.entry_written, started, started_endpoint,
                     unsettled, given, used)
        return m

    def _start(self, m, job, given, used, name):
        """Return how ``job`` starts (:data:`_Start`): its entry at the slot of its ring's tail
        counting the slots given (``given``, per ring), where its writes begin, and whether its
        ring is full (the slots given and not consumed, ``used``, are as many as it has, or
        more)."""
        plan = Signal(_Start, name=f"{name}_start")
        tail = get_indexed(m, given, job.dst_endpoint, 16, f"{name}_tail_given")
        slot = Signal(16, name=f"{name}_slot")
        slot_pa_offset = Signal(PA_BITS, name=f"{name}_slot_pa_offset")
        m.d.comb += [
            # (the mask a compare per bit, not ``2**k - 1``: no carry chain beside the check;
            # a ring has at most 2**15 entries)
            slot.eq(tail & Cat(*(job.ring_log2 > bit for bit in range(15)), C(0, 1))),
            slot_pa_offset.eq(slot << _ENTRY_SHIFT),
            plan.entry_pa.eq(Cat(C(0, _ENTRY_SHIFT), job.ring_pa[_ENTRY_SHIFT:])
                             + slot_pa_offset),
            plan.slot.eq(slot),
            plan.full.eq(get_indexed(m, list(get_indexed(m, used, job.dst_endpoint, 16,
                                                         f"{name}_used")),
                                     job.ring_log2, 1, f"{name}_full")),
            plan.endpoint.eq(job.dst_endpoint),
        ]
        part, offset, left = _first_write(m, job, plan.entry_pa, name)
        m.d.comb += [plan.part.eq(part), plan.offset.eq(offset), plan.left.eq(left)]
        return plan

    def _settle(self, m, settling, sending, entry_written, started, started_endpoint,
                unsettled, given, used):
        """Keep a record of each job written (the sender's, ``sending``) until the MessageBuffer
        has released its lines; then, in order, advance its ring's tail, count it, and offer its
        completion. Count the slots given (a job started in the cycle before, ``started``, for
        ``started_endpoint``) and not advanced, per ring, the tail counting them (``given``: the
        tail plus those), and the slots given and not consumed (``used``: ``given`` less the
        head, bit ``k`` telling whether they fill a ring of ``2**k``)."""
        done = Signal(_LINE_COUNT_BITS, name="lines_done_count")
        m.d.sync += done.eq(done + self.lines_done)
        record = Signal(_Settling)
        m.d.comb += [
            record.endpoint.eq(sending.job.dst_endpoint),
            record.notify.eq(sending.job.notify),
            record.rejected.eq(sending.job.rejected),
            record.entry_va.eq(sending.job.ring_va + (sending.slot << _ENTRY_SHIFT)),
            # (taken as its entry's announcement was, which was before its last word)
            record.lines.eq(sending.lines),
            settling.w_data.eq(record),
            settling.w_en.eq(entry_written),
        ]

        # The oldest record: settled once the released lines, counting one released in this
        # cycle, reach its count (the difference read as signed: both differences are worked out,
        # the release, which comes late, from the MessageBuffer, choosing one). Its tail advances
        # in the first cycle it is settled, and it leaves as its completion is taken (at once if
        # it has none).
        oldest = _Settling(settling.r_data)
        # (``done_after`` is always ``done + 1``, kept as a register of its own so that no adder
        # stands before its difference)
        done_after = Signal(_LINE_COUNT_BITS, init=1, name="lines_done_count_after")
        m.d.sync += done_after.eq(done_after + self.lines_done)
        behind = Signal(_LINE_COUNT_BITS)
        behind_after = Signal(_LINE_COUNT_BITS)
        settled = Signal(name="settled")
        advanced = Signal(name="settled_advanced")
        advance = Signal(name="settled_advance")
        leaves = Signal(name="settled_leaves")
        m.d.comb += [
            behind.eq(done - oldest.lines),
            behind_after.eq(done_after - oldest.lines),
            settled.eq(settling.r_rdy & ~Mux(self.lines_done, behind_after[-1], behind[-1])),
            advance.eq(settled & ~advanced),
            leaves.eq(settled & (~oldest.notify | self.completion.ready)),
            settling.r_en.eq(leaves),
            self.completion.valid.eq(settled & oldest.notify),
            self.completion.payload.endpoint.eq(oldest.endpoint),
            self.completion.payload.entry.eq(oldest.entry_va),
        ]
        m.d.sync += advanced.eq(settled & ~leaves)

        # The tails move, and the slots given and not advanced and the counts are counted, from
        # the advance of the cycle before (``advance_before``: the advance comes late, from the
        # records' RAM, a compare and the MessageBuffer's release).
        advance_before = Signal(name="settled_advance_before")
        advance_before_endpoint = Signal.like(oldest.endpoint,
                                              name="settled_advance_before_endpoint")
        advance_before_rejected = Signal(name="settled_advance_before_rejected")
        m.d.sync += [advance_before.eq(advance), advance_before_endpoint.eq(oldest.endpoint),
                     advance_before_rejected.eq(oldest.rejected)]

        # The ring tails: reset by the NI, advanced by each entry settled; the slots given and
        # not advanced, per ring; and the counts.
        for index, (ring_tail, waiting, slots, in_use) in enumerate(zip(self.ring_tail, unsettled,
                                                                         given, used)):
            starts = started & (started_endpoint == index)
            advanced_before = advance_before & (advance_before_endpoint == index)
            # ``lost``: the advance in the cycle of a reset (``restarted``: in the cycle before),
            # which the reset undoes.
            restarted = Signal(name=f"restarted{index}")
            lost = Signal(name=f"lost{index}")
            m.d.sync += restarted.eq(self.ring_reset[index])
            m.d.comb += lost.eq(restarted & advanced_before)
            waiting_next = Signal.like(waiting, name=f"unsettled{index}_next")
            slots_next = Signal.like(slots, name=f"given{index}_next")
            m.d.comb += waiting_next.eq(waiting + starts - advanced_before)
            # (an advance moves a slot from the unsettled to the tail: the slots given stay; but
            # the slot of an advance lost to a reset goes, from the cycle after)
            with m.If(self.ring_reset[index]):
                m.d.comb += slots_next.eq(waiting_next)
                m.d.sync += ring_tail.eq(0)
            with m.Else():
                m.d.comb += slots_next.eq(slots + starts - lost)
                with m.If(advanced_before & ~lost):
                    m.d.sync += ring_tail.eq(ring_tail + 1)
            # The slots used, counted in one cycle and told as bits in the next, with a start
            # not counted in ``given`` by then (one in either of the two cycles before: then a
            # ring they leave one short of full is full): a job starts at most every other cycle
            # (it starts in IDLE or RING, and goes to WRITE), so there is at most one, and a
            # check never misses a slot just given. The head it sees is two cycles old: the ring
            # looks fuller than it is, for two cycles, never emptier (a head moves forward). After
            # a reset the count is of the old tail for a few cycles, never less than of the new
            # (the slots given go down by the tail, which is never behind the head, or the count
            # wraps, and a wrapped count is full); in the cycle after, as the slots given are not
            # yet less an advance the reset lost, the ring looks full, and the held job's answers
            # of that cycle with it.
            count = Signal(16, name=f"used{index}_count")
            recent = Signal(name=f"used{index}_recent")
            at_least = _scan(m, count, "or", f"used{index}_at_least")
            ones_below = _scan(m, count, "and", f"used{index}_ones")
            m.d.sync += [
                waiting.eq(waiting_next), slots.eq(slots_next),
                count.eq(slots - self.ring_head[index]), recent.eq(starts),
                in_use.eq(Mux(self.ring_reset[index], C(-1, 16),
                              Mux(starts | recent, at_least | Cat(C(1), ones_below[:-1]),
                                  at_least))),
            ]
        with m.If(advance_before):
            with m.If(advance_before_rejected):
                m.d.sync += self.count_rejected.eq(self.count_rejected + 1)
            with m.Else():
                m.d.sync += self.count_delivered.eq(self.count_delivered + 1)


def _scan(m, value, kind, name):
    """Return, in a few levels of logic, bit ``k`` of which is: for ``kind`` "or", whether a bit
    of ``value`` at ``k`` or above is set; for "and", whether every bit at ``k`` or below is."""
    width = len(value)
    step = value
    shift = 1
    while shift < width:
        # (each level combines a bit with the one ``shift`` away, doubling the bits covered)
        level = Signal(width, name=f"{name}_{shift}")
        if kind == "or":
            m.d.comb += level.eq(step | (step >> shift))
        else:
            m.d.comb += level.eq(step & Cat(C(-1, shift), step[:width - shift]))
        step, shift = level, shift * 2
    return step


def _first_write(m, job, entry_pa, name):
    """Return where the writes of ``job`` (its entry at ``entry_pa``) begin, as the ``part``,
    ``offset`` and ``left`` of :class:`_Announcer`: its payload, unless rejected or empty, else
    its entry."""
    words = Signal(range(MAX_PAYLOAD_WORDS + 1), name=f"{name}_words")
    part = Signal(Part, name=f"{name}_part")
    offset = Signal(PAGE_BITS + 1, name=f"{name}_offset")
    left = Signal(range(MAX_PAYLOAD_WORDS + 1), name=f"{name}_left")
    m.d.comb += [
        words.eq(Mux(job.rejected, 0, job.length[_WORD_SHIFT:])),
        part.eq(Mux(words != 0, Part.PAYLOAD, Part.ENTRY)),
        offset.eq(Mux(words != 0, Cat(C(0, _WORD_SHIFT), job.remote_va[_WORD_SHIFT:PAGE_BITS]),
                      entry_pa[:PAGE_BITS + 1])),
        left.eq(Mux(words != 0, words, COMPLETION_WORDS)),
    ]
    return part, offset, left


class _Announcer:
    """The announcing side of a :class:`MessageWriter`: announces the job's lines on ``rx_line``,
    each line's address and the words the message covers in it. ``offset`` is the byte offset
    from the first page's base (the entry's physical address for the entry), ``word`` the line's
    first word, ``left`` the words still to announce; the writer sets them to start a job, and
    drives ``rx_line.valid``. ``next_addr`` is the line after this one: the payload's next, or the
    entry's."""

    def __init__(self, m, writer, job, entry_pa):
        self.part = part = Signal(Part, init=Part.DONE, name="announce_part")
        self.offset = offset = Signal(PAGE_BITS + 1, name="announce_offset")
        self.left = left = Signal(range(MAX_PAYLOAD_WORDS + 1), name="announce_left")
        # The line's first word is a register of its own, as wide as the counts it is added to:
        # a slice of the offset would be a narrower operand, which Verilator's -Wall reports.
        self.word = word = Signal(range(MAX_PAYLOAD_WORDS + 1), name="announce_word")
        self.taken = taken = Signal(name="line_taken")
        self.next_addr = next_addr = Signal(RxLineHint["addr"].shape, name="announce_next_addr")
        reach = Signal(range(MAX_PAYLOAD_WORDS + LINE_WORDS), name="announce_reach")
        count = Signal(range(MAX_PAYLOAD_WORDS + 1), name="announce_count")
        pa = Signal(PA_BITS, name="announce_pa")
        next_offset = Signal(PAGE_BITS + 1, name="announce_next_offset")
        more = Signal(name="announce_more")
        rx_line = writer.rx_line
        line = rx_line.payload
        m.d.comb += [
            reach.eq(left + word),
            count.eq(Mux(reach >= LINE_WORDS, LINE_WORDS - word, left)),
            pa.eq(Mux(part == Part.ENTRY, entry_pa,
                      Cat(offset[:PAGE_BITS], Mux(offset[PAGE_BITS], job.ppn[1], job.ppn[0])))),
            line.addr.eq(pa[_LINE_SHIFT:]),
            # (the last word's first test always holds, and is left out as Verilator warns)
            line.words.eq(Cat(((word <= index) if index < LINE_WORDS - 1 else C(1))
                              & (reach > index) for index in range(LINE_WORDS))),
            # (a line after the first begins at its word 0: the next is the line after this)
            next_offset.eq(Cat(C(0, _LINE_SHIFT), offset[_LINE_SHIFT:] + 1)),
            more.eq(reach > LINE_WORDS),
            next_addr.eq(Mux(more,
                             Cat(next_offset[_LINE_SHIFT:PAGE_BITS],
                                 Mux(next_offset[PAGE_BITS], job.ppn[1], job.ppn[0])),
                             entry_pa[_LINE_SHIFT:])),
            taken.eq(rx_line.valid & rx_line.ready),
        ]
        with m.If(taken):
            with m.If((part == Part.PAYLOAD) & more):
                m.d.sync += [offset.eq(next_offset), word.eq(0), left.eq(left - count)]
            with m.Elif(part == Part.PAYLOAD):
                m.d.sync += [part.eq(Part.ENTRY), offset.eq(entry_pa[:PAGE_BITS + 1]),
                             word.eq(entry_pa[_WORD_SHIFT:_LINE_SHIFT]),
                             left.eq(COMPLETION_WORDS)]
            with m.Else():
                m.d.sync += part.eq(Part.DONE)


class _Sender:
    """The sending side of a :class:`MessageWriter`: sends the job's words on ``rx_data``, the
    payload's from ``words``, then the completion entry's. ``offset`` and ``left`` as for
    :class:`_Announcer`; the writer sets them to load a job, and drives ``rx_data.valid``."""

    def __init__(self, m, writer, job, entry_pa):
        self.part = part = Signal(Part, init=Part.DONE, name="send_part")
        self.offset = offset = Signal(PAGE_BITS + 1, name="send_offset")
        self.left = left = Signal(range(MAX_PAYLOAD_WORDS + 1), name="send_left")
        self.line_done = line_done = Signal()
        self.entry_written = entry_written = Signal()
        completion_entry = Signal(CompletionEntry)
        m.d.comb += [
            completion_entry.src_node.eq(job.src_node),
            completion_entry.src_endpoint.eq(job.src_endpoint),
            completion_entry.status.eq(Mux(job.rejected, CompletionStatus.REJECTED,
                                           CompletionStatus.DELIVERED)),
            completion_entry.length.eq(job.length),
            completion_entry.seq.eq(job.seq),
            completion_entry.landing_va.eq(job.remote_va),
            completion_entry.metadata.eq(job.metadata),
            completion_entry.stamp.eq(job.stamp),
        ]
        entry_word = Signal(range(COMPLETION_WORDS))
        entry_data = Signal(FLIT_DATA_BITS)
        m.d.comb += entry_word.eq(offset[_WORD_SHIFT:_ENTRY_SHIFT])
        for word in range(COMPLETION_WORDS):
            with m.If(entry_word == word):
                m.d.comb += entry_data.eq(
                    completion_entry.as_value().word_select(word, FLIT_DATA_BITS))
        rx_data = writer.rx_data
        beat = rx_data.payload
        taken = Signal(name="beat_taken")
        payload_taken = Signal()
        # The word index from its own signal, not from the payload: a payload bit computed from
        # another bit of the same payload is a combinational loop to Verilator (UNOPTFLAT).
        beat_word = Signal(range(LINE_WORDS))
        m.d.comb += [
            beat_word.eq(offset[_WORD_SHIFT:_LINE_SHIFT]),
            beat.word.eq(beat_word),
            beat.data.eq(Mux(part == Part.ENTRY, entry_data, writer.words.payload)),
            beat.last.eq((beat_word == LINE_WORDS - 1) | (left == 1)),
            taken.eq(rx_data.valid & rx_data.ready),
            payload_taken.eq(taken & (part == Part.PAYLOAD)),
            writer.words.ready.eq(payload_taken),
            line_done.eq(taken & beat.last),
            entry_written.eq(taken & (part == Part.ENTRY) & (left == 1)),
        ]
        with m.If(taken):
            m.d.sync += [offset.eq(offset + FLIT_BYTES), left.eq(left - 1)]
            with m.If(payload_taken & (left == 1)):
                m.d.sync += [part.eq(Part.ENTRY), offset.eq(entry_pa[:PAGE_BITS + 1]),
                             left.eq(COMPLETION_WORDS)]
            with m.Elif(entry_written):
                m.d.sync += part.eq(Part.DONE)
