from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import (FLIT_BYTES, FLIT_DATA_BITS, HEADER_FLITS, LINE_BYTES, MAX_PAYLOAD_WORDS,
                      PAGE_BITS, RxJob, RxLineHint, RxStagedWord)

__all__ = ["PacketQueue", "QUEUED_JOBS", "STAGING_WORDS"]

#: Payload words of one message in the staging RAM (the largest message's); the RAM holds two.
STAGING_WORDS = MAX_PAYLOAD_WORDS
#: Jobs queued for the writer behind the one it is on: enough that short messages arriving while
#: a long one is written keep streaming in.
QUEUED_JOBS = 4
#: The staging RAM holds two largest messages' payloads, as a circular buffer.
_STAGING_DEPTH = 2 * STAGING_WORDS
_STAGING_ADDR_BITS = (_STAGING_DEPTH - 1).bit_length()
#: Bits of a byte address below the word, and below the line.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1

assert _STAGING_DEPTH == 1 << _STAGING_ADDR_BITS, "staging addresses wrap around the RAM"
assert HEADER_FLITS >= 2, "the room for a payload is registered from the header's first flit on"


class PacketQueue(wiring.Component):
    """The RX engine's staging RAM and job queue, between its receiver and its writer.

    Part of :class:`rtl.rxengine.RxEngine`: the :class:`rtl.receiver.MessageReceiver` writes the
    payload of the message coming in (``staging``) and offers the message as a job once it has
    passed its checks and translation (``message``); the :class:`rtl.writer.MessageWriter` takes
    the jobs, in arrival order (``job``), and each job's payload words (``words``).

    **Staging RAM.** A circular buffer of two largest payloads (2 * :data:`STAGING_WORDS`
    words), so that the next messages stream in while the writer reads out a job's. The payload
    of the message coming in goes into the free words (those no job holds) from ``base`` on;
    a job's words (none for a rejected one) are taken as it is handed over, and each is freed in
    the cycle after the writer takes it. So the jobs' words follow each other in the RAM, in
    arrival order, and the writer reads them as one stream.

    **Jobs.** The oldest job waits in a register, the writer's offer, and up to
    :data:`QUEUED_JOBS` behind it in the queue, in arrival order. A message handed over goes
    into the register if it is empty, else behind it (for its first cycle in a register of its
    own, then in a FIFO), so that a message handed over to an idle writer is offered from the
    next cycle. Its verdict, which comes late in its cycle, from the trailer's checks, meets
    only those two registers' valid bits; the writer's job comes from a register.

    Members
    -------
    staging : In(stream.Signature(RxStagedWord))
        The payload words of the message coming in. Ready from the cycle after the RAM had
        ``words`` free words, ``words`` as offered then (a register, so that the receiver's logic
        waits for no compare: the receiver's header fixes ``words``, and the message before is
        handed over, a header's flits before its first payload word), and for the rest of the
        message once it is; word ``index`` goes to ``base + index``.
    message : In(stream.Signature(RxJob))
        The message coming in, as a job once its payload is in; taken while the oldest job's
        register or the register behind it is empty (from registers: the receiver waits for no
        sum or compare). A message handed over behind the oldest job leaves the register behind
        it in the next cycle if the FIFO has room.
    job : Out(stream.Signature(RxJob))
        The oldest job, from its register.
    words : Out(stream.Signature(FLIT_DATA_BITS))
        The payload words of the jobs the writer took, in order, a job's after those of the jobs
        before it (the writer may take a job before it has taken the words of the one before),
        from the second cycle after the job is taken; the RAM's read port always shows the next
        one (it reads the one after in the cycle a word is taken).
    incoming_line : In(RxLineHint)
        The first payload line of the message coming in.
    next_line : Out(RxLineHint)
        The first payload line of the job the writer will take next: the oldest job's, else
        ``incoming_line``; not ``valid`` for a job without payload lines.
    """

    def __init__(self):
        super().__init__({
            "staging": In(stream.Signature(RxStagedWord)),
            "message": In(stream.Signature(RxJob)),
            "job": Out(stream.Signature(RxJob)),
            "words": Out(stream.Signature(FLIT_DATA_BITS)),
            "incoming_line": In(RxLineHint),
            "next_line": Out(RxLineHint),
        })

    def elaborate(self, platform):
        m = Module()

        # Submodules: the staging RAM and the queue of jobs.
        m.submodules.staging = staging = Memory(shape=FLIT_DATA_BITS, depth=_STAGING_DEPTH,
                                                init=[])
        m.submodules.jobs = jobs = SyncFIFO(width=RxJob.size, depth=QUEUED_JOBS - 1)
        write_port = staging.write_port()
        read_port = staging.read_port()

        # The payload coming in, into the free words from ``base`` on.
        base = Signal(_STAGING_ADDR_BITS, name="base")
        free_words = Signal(range(_STAGING_DEPTH + 1), init=_STAGING_DEPTH, name="free_words")
        word = self.staging.payload
        room = Signal(init=1, name="room")
        m.d.comb += [
            self.staging.ready.eq(room),
            write_port.addr.eq(base + word.index),
            write_port.data.eq(word.data),
            write_port.en.eq(self.staging.valid & self.staging.ready),
        ]

        # The jobs: the oldest in a register (``head``, what the writer is offered), those behind
        # it in the queue, the newest of them in a register of its own (``arrived``) for its
        # first cycle. A message handed over goes into the head if it is empty (nothing is
        # behind it then), else into ``arrived``, from which it moves into the queue in the
        # next cycle. A job taken gives the head to the oldest queued, else to ``arrived``, else
        # to a message handed over in the same cycle. (The message's verdict, which comes late,
        # from the trailer's checks, meets only these two registers; the writer's job is one.)
        head = Signal(RxJob, name="head")
        head_valid = Signal(name="head_valid")
        arrived = Signal(RxJob, name="arrived")
        arrived_valid = Signal(name="arrived_valid")
        handoff = Signal(name="handoff")
        take = Signal(name="take")
        # (a job taken with none queued: the head takes ``arrived``, or the message handed over)
        refill_behind = Signal()
        message = self.message.payload
        # (an expression, not a signal: as an operand, it is as wide as the sum it is taken
        # from, which Verilator's -Wall asks for)
        kept_words = Mux(message.rejected, 0, message.length[_WORD_SHIFT:])
        m.d.comb += [
            self.message.ready.eq(~head_valid | ~arrived_valid),
            handoff.eq(self.message.valid & self.message.ready),
            self.job.valid.eq(head_valid),
            self.job.payload.eq(head),
            take.eq(self.job.valid & self.job.ready),
            refill_behind.eq(take & ~jobs.r_rdy),
            jobs.w_data.eq(arrived),
            jobs.w_en.eq(arrived_valid & ~refill_behind),
            jobs.r_en.eq(take & jobs.r_rdy),
        ]
        with m.If(handoff):
            m.d.sync += base.eq(base + kept_words)
        # (The head and ``arrived`` load the message offered whenever they could take it, so
        # that whether it is handed over drives only their valid bits.)
        with m.If(take & jobs.r_rdy):
            m.d.sync += head.eq(jobs.r_data)
        with m.Elif(refill_behind & arrived_valid):
            m.d.sync += head.eq(arrived)
        with m.Elif(~head_valid | refill_behind):
            m.d.sync += head.eq(message)
        with m.If(refill_behind & ~arrived_valid):
            m.d.sync += head_valid.eq(handoff)
        with m.Elif(handoff & ~head_valid):
            m.d.sync += head_valid.eq(1)
        with m.If(~arrived_valid):
            m.d.sync += arrived.eq(message)
        with m.If(handoff & head_valid & ~(refill_behind & ~arrived_valid)):
            m.d.sync += arrived_valid.eq(1)
        with m.Elif(arrived_valid & (jobs.w_rdy | refill_behind)):
            m.d.sync += arrived_valid.eq(0)

        # The words of the jobs taken, read ahead: each job's words start where those of the one
        # before end (``base`` as it was handed over), so the read address only counts up. A
        # job's words count from the cycle after it is taken (``taken_words``): the take comes
        # late, from the writer; its first line is announced in that cycle at the earliest, and
        # its words follow the announcement.
        job = self.job.payload
        read_addr = Signal(_STAGING_ADDR_BITS, name="read_addr")
        # (and the address after it, so that a word taken, which comes late, from the writer,
        # chooses the read port's address with no carry chain after it)
        read_addr_after = Signal(_STAGING_ADDR_BITS, init=1, name="read_addr_after")
        words_left = Signal(range(_STAGING_DEPTH + 1), name="words_left")
        taken_words = Signal.like(words_left, name="taken_words")
        word_taken = Signal()
        freed = Signal(name="word_freed")
        m.d.comb += [
            self.words.valid.eq(words_left != 0),
            self.words.payload.eq(read_port.data),
            word_taken.eq(self.words.valid & self.words.ready),
            read_port.addr.eq(Mux(word_taken, read_addr_after, read_addr)),
        ]
        m.d.sync += [
            read_addr.eq(read_addr + word_taken),
            read_addr_after.eq(read_addr_after + word_taken),
            taken_words.eq(Mux(take & ~job.rejected, job.length[_WORD_SHIFT:], 0)),
            words_left.eq(words_left + taken_words - word_taken),
            # (a word is freed in the cycle after it is taken, ``freed``: the take comes late,
            # from the writer; the handover, which comes late too, chooses between two sums)
            freed.eq(word_taken),
            free_words.eq(Mux(handoff, free_words + freed - kept_words, free_words + freed)),
            room.eq(word.words <= free_words),
        ]

        # The first payload line of the job the writer takes next: the head's, else the one
        # coming in.
        def first_line(next_job):
            return [self.next_line.valid.eq(~next_job.rejected & (next_job.length != 0)),
                    self.next_line.addr.eq(Cat(next_job.remote_va[_LINE_SHIFT:PAGE_BITS],
                                               next_job.ppn[0]))]
        with m.If(head_valid):
            m.d.comb += first_line(head)
        with m.Else():
            m.d.comb += self.next_line.eq(self.incoming_line)
        return m
