from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .layouts import (FLIT_BYTES, FLIT_DATA_BITS, LINE_ADDR_BITS, LINE_BYTES, LINE_WORDS,
                      MAX_PAYLOAD_WORDS, PAGE_BITS, PPN_BITS, LineBeat, LineRequest,
                      MessageHeader, SendPlan, TxSlotRead, WordBeat)
from .params import check_int

__all__ = ["PayloadFetcher"]

#: Most lines a DMA payload touches: up to 7 words before it in its first line.
MAX_LINES = (LINE_WORDS - 1 + MAX_PAYLOAD_WORDS + LINE_WORDS - 1) // LINE_WORDS
#: Bits of a byte address below the word, below the line, and of a line index in its page.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_LINES_PER_PAGE_BITS = PAGE_BITS - _LINE_SHIFT

assert LINE_ADDR_BITS == PPN_BITS + _LINES_PER_PAGE_BITS


class PayloadFetcher(wiring.Component):
    """Brings the payload of a TX engine's send to the framer, and lets its header go once the
    payload can follow it without a gap.

    Part of :class:`rtl.txengine.TxEngine` (its "DMA fetch and the prefetch FIFO" paragraph gives
    the rules): it takes a plan from the engine's :class:`rtl.sendchecker.SendChecker` and feeds
    the :class:`rtl.framing.MessageFramer`, one plan at a time.

    **Prefetch FIFO.** The payload's words reach ``words`` through a FIFO of
    ``send_buffering * 8`` words (a :class:`~amaranth.lib.fifo.SyncFIFOBuffered`, submodule
    ``prefetch``). A read is made only when the FIFO has room for its word, a DMA line only when
    it has room for all 8 of the line's words, beside every word already asked for and not yet
    sent: the fetch runs at most ``send_buffering`` lines ahead of the framer and the FIFO never
    refuses a word.

    **PIO.** The payload is read from the TX slot on ``slot_read``, a word at a time, from the
    cycle the plan is offered.

    **DMA.** The lines from the first payload word's to the last's are fetched in order, from the
    cycle the plan is offered. Each is probed in the MessageBuffer (``ni_read``, one probe
    offered at a time, the next one offered while the answer to the one before streams in); a
    miss is then read from memory (``dma_read``), several lines outstanding. Words of a buffered
    line (a hit) are taken only once every line asked from memory before it has arrived, so that
    words reach the FIFO in order. The words of the first and last line that the payload does not
    cover are dropped. The physical line of payload word ``i`` is ``(offset + 8 i) >> 6`` in the
    frame ``ppn``, or in ``next_ppn`` past the page's end.

    **Header.** The plan's header is offered once: at once for a PIO plan or a plan without
    payload; for a DMA plan once the first payload word is in the FIFO, so that the memory's
    latency is not a gap in the middle of the message (which would hold the Fabric's wormhole
    path idle).

    Parameters
    ----------
    send_buffering : int
        DMA lines fetched ahead of the framer, 1 to 16: the prefetch FIFO holds
        ``send_buffering * 8`` words.

    Members
    -------
    plan : In(stream.Signature(SendPlan))
        The send to fetch; its ``header.length`` must be a multiple of 8 of at most
        MAX_PAYLOAD_BYTES (the SendChecker refuses others). It must hold until taken, which it
        is once the header has gone, every payload word has gone on ``words`` and every word of
        the DMA lines asked for has arrived, so that none of them is taken for the next plan's.
    header : Out(stream.Signature(MessageHeader))
        The plan's header, once per plan.
    words : Out(stream.Signature(FLIT_DATA_BITS))
        The payload's words in order, from the prefetch FIFO.
    slot_read : Out(stream.Signature(TxSlotRead))
        PIO: reads of the payload's words from the TX slot, in order.
    slot_data : In(stream.Signature(FLIT_DATA_BITS))
        Always ready: one word per read, in order, any latency.
    ni_read : Out(stream.Signature(LineRequest))
        Probes of the MessageBuffer, from a register, one per DMA line, in line order.
    ni_data : In(stream.Signature(LineBeat))
        The probes' answers in order: a miss beat is taken when ``dma_read`` has room, the words
        of a hit once the lines before it have come from memory.
    dma_read : Out(stream.Signature(LineRequest))
        Reads of lines the MessageBuffer does not hold, from a register, in line order; at most
        ``send_buffering`` outstanding.
    dma_data : In(stream.Signature(WordBeat))
        Always ready: 8 words per line asked for, in order, ``last`` on the 8th. Any latency,
        any number of requests outstanding.
    count_dma_lines : Out(32)
        DMA lines probed (wrapping).
    """

    def __init__(self, *, send_buffering=4):
        self._send_buffering = check_int(self, "send_buffering", send_buffering, 1, 16)
        super().__init__({
            "plan": In(stream.Signature(SendPlan)),
            "header": Out(stream.Signature(MessageHeader)),
            "words": Out(stream.Signature(FLIT_DATA_BITS)),
            "slot_read": Out(stream.Signature(TxSlotRead)),
            "slot_data": In(stream.Signature(FLIT_DATA_BITS)),
            "ni_read": Out(stream.Signature(LineRequest)),
            "ni_data": In(stream.Signature(LineBeat)),
            "dma_read": Out(stream.Signature(LineRequest)),
            "dma_data": In(stream.Signature(WordBeat)),
            "count_dma_lines": Out(32),
        })

    @property
    def send_buffering(self):
        return self._send_buffering

    def elaborate(self, platform):
        m = Module()
        depth = self._send_buffering * LINE_WORDS

        # Submodules: the prefetch FIFO, which feeds the framer.
        m.submodules.prefetch = prefetch = SyncFIFOBuffered(width=FLIT_DATA_BITS, depth=depth)
        popped = Signal()
        m.d.comb += [
            self.words.valid.eq(prefetch.r_rdy),
            self.words.payload.eq(prefetch.r_data),
            prefetch.r_en.eq(self.words.ready),
            popped.eq(prefetch.r_rdy & self.words.ready),
        ]

        # What the plan says: the payload's words, and for DMA where its first word is in its
        # line and the lines from the first word's to the last word's (none for no words): the
        # whole lines of the length, and one or two more for the words in front of the payload in
        # its first line plus the length's odd words.
        plan = self.plan.payload
        fetching, dma = self.plan.valid, plan.dma
        words = Signal(range(MAX_PAYLOAD_WORDS + 1))
        first_word = Signal(_LINE_SHIFT - _WORD_SHIFT)
        lines = Signal(range(MAX_LINES + 1))
        # (arithmetic on operands of one width, or of one bit, which Verilator lints clean)
        line_words = Signal(_LINE_SHIFT - _WORD_SHIFT + 1)
        m.d.comb += [
            words.eq(plan.header.length[_WORD_SHIFT:]),
            first_word.eq(plan.offset[_WORD_SHIFT:_LINE_SHIFT]),
            line_words.eq(first_word + words[:_LINE_SHIFT - _WORD_SHIFT]),
            lines.eq(Mux(words == 0, 0,
                         words[_LINE_SHIFT - _WORD_SHIFT:] + (line_words != 0)
                         + (line_words > LINE_WORDS))),
        ]

        # The line count, also in a register (a long sum of the plan's fields, too slow in front
        # of the probe's logic): it stands from a plan's second cycle, and in its first, when no
        # line has been probed and no header sent, whether there are lines is whether there are
        # words.
        lines_held = Signal.like(lines)
        first_cycle = Signal(init=1)
        m.d.sync += [lines_held.eq(lines), first_cycle.eq(~self.plan.valid | self.plan.ready)]

        # The counts of the plan in hand, restarted for the next one (see below).
        # Words of room in the FIFO not yet promised to a read; a DMA line promises all 8 of its
        # words, and the words it does not cover give their room back as they arrive.
        room = Signal(range(depth + 1), init=depth)
        # PIO: payload words read. DMA: lines probed, lines answered, lines whose words have all
        # arrived, arriving words dropped in front of the payload. Both: words into the FIFO.
        words_read = Signal(range(MAX_PAYLOAD_WORDS + 1))
        lines_probed = Signal(range(MAX_LINES + 1))
        lines_answered = Signal(range(MAX_LINES + 1))
        lines_arrived = Signal(range(MAX_LINES + 1))
        words_skipped = Signal.like(first_word)
        words_kept = Signal.like(words)
        # Lines asked of memory whose words have not all arrived (including the one in dma_read).
        memory_lines = Signal(range(self._send_buffering + 1))
        header_sent = Signal()

        # PIO: a word read while there is room for it.
        m.d.comb += [
            self.slot_read.valid.eq(fetching & ~dma & (words_read < words) & (room != 0)),
            self.slot_read.payload.word.eq(words_read),
            self.slot_data.ready.eq(1),
        ]
        pio_read = Signal()
        m.d.comb += pio_read.eq(self.slot_read.valid & self.slot_read.ready)

        # DMA probes: the next line when its 8 words have room and the probe register is free.
        probe, probe_free = Signal(), Signal()
        m.d.comb += [
            probe_free.eq(~self.ni_read.valid | self.ni_read.ready),
            probe.eq(fetching & dma
                     & Mux(first_cycle, words != 0, lines_probed < lines_held)
                     & (room >= LINE_WORDS) & probe_free),
        ]
        probe_addr = self._line_addr(m, "probe_addr", plan, lines_probed)
        with m.If(probe):
            m.d.sync += [self.ni_read.valid.eq(1), self.ni_read.payload.addr.eq(probe_addr)]
        with m.Elif(self.ni_read.ready):
            m.d.sync += self.ni_read.valid.eq(0)

        # Answers: a miss goes to memory through the dma_read register; a hit's words are taken
        # once memory has delivered every line asked for before it.
        beat = self.ni_data.payload
        miss_taken, hit_taken, memory_word, memory_done = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            self.ni_data.ready.eq(Mux(beat.hit, memory_lines == 0,
                                      ~self.dma_read.valid | self.dma_read.ready)),
            miss_taken.eq(self.ni_data.valid & self.ni_data.ready & ~beat.hit),
            hit_taken.eq(self.ni_data.valid & self.ni_data.ready & beat.hit),
            self.dma_data.ready.eq(1),
            memory_word.eq(self.dma_data.valid),
            memory_done.eq(self.dma_data.valid & self.dma_data.payload.last),
        ]
        answer_addr = self._line_addr(m, "answer_addr", plan, lines_answered)
        with m.If(miss_taken):
            m.d.sync += [self.dma_read.valid.eq(1), self.dma_read.payload.addr.eq(answer_addr)]
        with m.Elif(self.dma_read.ready):
            m.d.sync += self.dma_read.valid.eq(0)

        # Words into the FIFO: PIO words as they come; arriving DMA words (memory's first: a hit
        # waits for memory to be done), the ones outside the payload dropped.
        arrived, covered, dropped = Signal(), Signal(), Signal()
        arrived_data = Signal(FLIT_DATA_BITS)
        drained = Signal()
        m.d.comb += [
            arrived.eq(memory_word | hit_taken),
            arrived_data.eq(Mux(memory_word, self.dma_data.payload.data, beat.data)),
            covered.eq((words_skipped == first_word) & (words_kept != words)),
            dropped.eq(arrived & ~covered),
            prefetch.w_en.eq(self.slot_data.valid | (arrived & covered)),
            prefetch.w_data.eq(Mux(self.slot_data.valid, self.slot_data.payload, arrived_data)),
            # (the plan is not taken in its first cycle: its header has not gone)
            drained.eq(~dma | (lines_arrived == lines_held)),
        ]

        # The header, once per plan (see the class docstring); the plan, taken when it is done.
        m.d.comb += [
            self.header.payload.eq(plan.header),
            self.header.valid.eq(fetching & ~header_sent
                                 & (~dma | (words == 0) | prefetch.r_rdy)),
            self.plan.ready.eq(header_sent & (words_kept == words) & (prefetch.r_level == 0)
                               & drained),
        ]

        # Room claimed by a read or a probe (given back by a word sent or dropped).
        # (never more than there is: a claim is made only with the room for it)
        claimed, unclaimed = Signal.like(room), Signal.like(room)
        m.d.comb += [claimed.eq(Mux(probe, LINE_WORDS, pio_read)),
                     unclaimed.eq(room - claimed)]

        # The counts, restarted while no plan is in hand and when one is done.
        with m.If(~self.plan.valid | self.plan.ready):
            m.d.sync += [room.eq(depth), words_read.eq(0), lines_probed.eq(0),
                         lines_answered.eq(0), lines_arrived.eq(0), memory_lines.eq(0),
                         words_skipped.eq(0), words_kept.eq(0), header_sent.eq(0)]
        with m.Else():
            m.d.sync += [
                room.eq(unclaimed + popped + dropped),
                words_read.eq(words_read + pio_read),
                lines_probed.eq(lines_probed + probe),
                lines_answered.eq(lines_answered
                                  + (self.ni_data.valid & self.ni_data.ready & beat.last)),
                lines_arrived.eq(lines_arrived + (memory_done | (hit_taken & beat.last))),
                memory_lines.eq(memory_lines + miss_taken - memory_done),
                words_kept.eq(words_kept + prefetch.w_en),
            ]
            with m.If(dropped & (words_skipped != first_word)):
                m.d.sync += words_skipped.eq(words_skipped + 1)
            with m.If(self.header.valid & self.header.ready):
                m.d.sync += header_sent.eq(1)
        m.d.sync += self.count_dma_lines.eq(self.count_dma_lines + probe)
        return m

    @staticmethod
    def _line_addr(m, name, plan, line):
        """Return a signal holding the physical line address of the payload's line ``line``."""
        in_page = Signal(_LINES_PER_PAGE_BITS + 1, name=f"{name}_in_page")
        addr = Signal(LINE_ADDR_BITS, name=name)
        m.d.comb += [
            in_page.eq(plan.offset[_LINE_SHIFT:] + line),
            addr.eq(Cat(in_page[:_LINES_PER_PAGE_BITS],
                        Mux(in_page[_LINES_PER_PAGE_BITS], plan.next_ppn, plan.ppn))),
        ]
        return addr
