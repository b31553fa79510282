from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import (FLIT_BYTES, FLIT_DATA_BITS, LINE_ADDR_BITS, LINE_BYTES, LINE_WORDS,
                      MAX_PAYLOAD_WORDS, PAGE_BITS, PPN_BITS, LineBeat, LineRequest,
                      MessageHeader, SendPlan, TxSlotRead, WordBeat)
from .onehot import get_indexed
from .params import check_int

__all__ = ["PayloadFetcher"]

#: Most lines a DMA payload touches: up to 7 words before it in its first line.
MAX_LINES = (LINE_WORDS - 1 + MAX_PAYLOAD_WORDS + LINE_WORDS - 1) // LINE_WORDS
#: Bits of a byte address below the word, below the line, and of a line index in its page.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_LINES_PER_PAGE_BITS = PAGE_BITS - _LINE_SHIFT

assert LINE_ADDR_BITS == PPN_BITS + _LINES_PER_PAGE_BITS

#: A line asked of memory: its number in the payload and the buffer slot its words go to.
_Asked = data.StructLayout({
    "line": range(MAX_LINES + 1),
    "slot": range(16),
})


class PayloadFetcher(wiring.Component):
    """Brings the payload of a TX engine's send to the framer, and lets its header go once the
    payload can follow it without a gap.

    Part of :class:`rtl.txengine.TxEngine` (its "DMA fetch and the prefetch buffer" paragraph gives
    the rules): it takes a plan from the engine's :class:`rtl.sendchecker.SendChecker` and feeds
    the :class:`rtl.framing.MessageFramer`, one plan at a time.

    **Prefetch buffer.** The payload's words reach ``words`` through a buffer of line slots, 8
    words each (``send_buffering`` of them, one more when that is odd; two banks of LUT RAM, the
    even slots and the odd, submodules ``prefetch_even`` and ``prefetch_odd``) and an output
    register. A read is made only when the buffer has room for its word, a DMA line only when it
    has room for all 8 of the line's words, beside every word already asked for and not yet sent:
    the fetch runs at most ``buffering`` lines ahead of the framer (``send_buffering`` unless the
    OS tuned it lower) and the buffer never refuses a word. A word written goes out from the
    second edge after it, in order.

    **PIO.** The payload is read from the TX slot on ``slot_read``, a word at a time, from the
    cycle the plan is offered.

    **DMA.** The lines from the first payload word's to the last's are fetched in order, from the
    cycle the plan is offered. Each is probed in the MessageBuffer (``ni_read``, one probe
    offered at a time, the next one offered while the answer to the one before streams in); a
    miss is then read from memory (``dma_read``), several lines outstanding. Each line has its
    slot: the words of a buffered line (a hit) go into its slot as they come, and so do memory's,
    whichever comes first, so a hit does not wait for the memory lines before it. (A hit's word
    waits a cycle when a word from memory goes into a slot of the same bank in that cycle.) The
    words of the first and last line that the payload does not cover are never sent. The
    physical line of payload word ``i`` is ``(offset + 8 i) >> 6`` in the frame ``ppn``, or in
    ``next_ppn`` past the page's end.

    **Header.** The plan's header is offered once: at once for a PIO plan or a plan without
    payload; for a DMA plan once the first payload word is ready to go, so that the memory's
    latency is not a gap in the middle of the message (which would hold the Fabric's wormhole
    path idle).

    Parameters
    ----------
    send_buffering : int
        The most DMA lines fetched ahead of the framer, 1 to 16: the prefetch buffer holds
        ``send_buffering * 8`` words.

    Members
    -------
    buffering : In(range(1, send_buffering + 1))
        The lines fetched ahead, at most ``send_buffering``: a plan may use ``buffering * 8`` of
        the buffer's words, ``buffering`` as it was in the cycle before the plan was offered (or
        in which the plan before it was taken).
    plan : In(stream.Signature(SendPlan))
        The send to fetch; its ``header.length`` must be a multiple of 8 of at most
        MAX_PAYLOAD_BYTES (the SendChecker refuses others). It must hold until taken, which it
        is once the header has gone, every payload word has gone on ``words`` and every word of
        the DMA lines asked for has arrived, so that none of them is taken for the next plan's.
    header : Out(stream.Signature(MessageHeader))
        The plan's header, once per plan.
    words : Out(stream.Signature(FLIT_DATA_BITS))
        The payload's words in order, from the prefetch buffer's output register.
    slot_read : Out(stream.Signature(TxSlotRead))
        PIO: reads of the payload's words from the TX slot, in order.
    slot_data : In(stream.Signature(FLIT_DATA_BITS))
        Always ready: one word per read, in order, any latency.
    ni_read : Out(stream.Signature(LineRequest))
        Probes of the MessageBuffer, from a register, one per DMA line, in line order.
    ni_data : In(stream.Signature(LineBeat))
        The probes' answers in order: a miss beat is taken when ``dma_read`` has room, the words
        of a hit as they come (see DMA).
    dma_read : Out(stream.Signature(LineRequest))
        Reads of lines the MessageBuffer does not hold, from a register, in line order; at most
        ``send_buffering`` outstanding.
    dma_data : In(stream.Signature(WordBeat))
        Always ready: 8 words per line asked for, in order, ``last`` on the 8th. Any latency,
        any number of requests outstanding.
    count_dma_lines : Out(32)
        DMA lines probed (wrapping).
    count_dma_cycles : Out(32)
        Cycles a DMA plan was in hand (wrapping).
    count_dma_buffer_word_cycles : Out(32)
        The sum over those cycles of the prefetch buffer's words in use: asked for (by a probe,
        8 a line) and not yet gone to the framer nor given back (wrapping). Over
        ``8 * count_dma_cycles``, the lines a DMA send holds in the buffer on average.
    """

    def __init__(self, *, send_buffering=4):
        self._send_buffering = check_int(self, "send_buffering", send_buffering, 1, 16)
        super().__init__({
            "buffering": In(range(1, send_buffering + 1), init=send_buffering),
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
            "count_dma_cycles": Out(32),
            "count_dma_buffer_word_cycles": Out(32),
        })

    @property
    def send_buffering(self):
        return self._send_buffering

    def elaborate(self, platform):
        m = Module()
        depth = self._send_buffering * LINE_WORDS

        # Submodules: the prefetch buffer, which feeds the framer through an output register,
        # and the lines asked of memory (their number and slot), in order.
        # The buffer is two banks, the even slots and the odd ones (an even number of slots, one
        # more than send_buffering when that is odd: never more lines in flight than slots), so
        # that a word from memory and a word of a hit go in together unless their lines'
        # slots are alike in parity.
        slots = self._send_buffering + (self._send_buffering & 1)
        banks = [Memory(shape=FLIT_DATA_BITS, depth=slots // 2 * LINE_WORDS, init=[])
                 for _ in range(2)]
        m.submodules.prefetch_even, m.submodules.prefetch_odd = banks
        # (at least 2 deep: a FIFO of 1 has addresses of no bits, which lint refuses)
        m.submodules.asked = asked = SyncFIFO(width=_Asked.size,
                                              depth=max(self._send_buffering, 2))
        writes = [bank.write_port() for bank in banks]
        reads = [bank.read_port(domain="comb") for bank in banks]
        out_valid = Signal()
        popped = Signal()
        m.d.comb += [
            self.words.valid.eq(out_valid),
            popped.eq(out_valid & self.words.ready),
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
        # Words of room in the buffer not yet promised to a read; a DMA line promises all 8 of its
        # words, and the words it does not cover give their room back as they arrive.
        room = Signal(range(depth + 1), init=depth)
        # (the words the plan may use: room's start, for the counters of the buffer's use)
        budget = Signal.like(room, init=depth)
        # PIO: payload words read. DMA: lines probed, lines answered, lines whose words have all
        # arrived.
        words_read = Signal(range(MAX_PAYLOAD_WORDS + 1))
        lines_probed = Signal(range(MAX_LINES + 1))
        lines_answered = Signal(range(MAX_LINES + 1))
        lines_arrived = Signal(range(MAX_LINES + 1))
        # Where the words go: line slots of 8 words in the buffer, taken in turn (a DMA line's
        # words go to its slot's word of the same number; PIO words one after the other); which
        # words are in; where the next word to go out is, and how many have gone to the output
        # register.
        present = Signal(slots * LINE_WORDS)
        read_slot, answer_slot = (Signal(range(slots), name=f"{name}_slot")
                                  for name in ("read", "answer"))
        read_word, pio_word, memory_word_at, hit_word = (
            Signal(range(LINE_WORDS), name=f"{name}_word")
            for name in ("read", "pio", "memory", "hit"))
        pio_slot = Signal(range(slots))
        moved = Signal.like(words)
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

        # Answers: a miss goes to memory through the dma_read register, noting the line's number
        # and slot; a hit's words are taken at once, into its slot, unless a word from memory
        # goes into the buffer in that cycle.
        beat = self.ni_data.payload
        miss_taken, hit_taken, memory_word, memory_done = Signal(), Signal(), Signal(), Signal()
        from_memory = _Asked(asked.r_data)
        same_bank = Signal()
        m.d.comb += [
            same_bank.eq(from_memory.slot[0] == answer_slot[0]),
            self.ni_data.ready.eq(Mux(beat.hit, ~self.dma_data.valid | ~same_bank,
                                      (~self.dma_read.valid | self.dma_read.ready) & asked.w_rdy)),
            miss_taken.eq(self.ni_data.valid & self.ni_data.ready & ~beat.hit),
            hit_taken.eq(self.ni_data.valid & self.ni_data.ready & beat.hit),
            asked.w_en.eq(miss_taken),
            asked.w_data.eq(Cat(lines_answered, answer_slot)),
            asked.r_en.eq(memory_done),
            self.dma_data.ready.eq(1),
            memory_word.eq(self.dma_data.valid),
            memory_done.eq(self.dma_data.valid & self.dma_data.payload.last),
        ]
        answer_addr = self._line_addr(m, "answer_addr", plan, lines_answered)
        with m.If(miss_taken):
            m.d.sync += [self.dma_read.valid.eq(1), self.dma_read.payload.addr.eq(answer_addr)]
        with m.Elif(self.dma_read.ready):
            m.d.sync += self.dma_read.valid.eq(0)

        # Words into the buffer: PIO words as they come, one after the other; arriving DMA words
        # (memory's, or a hit's) to their line's slot. The words of the first and last line that
        # the payload does not cover go in too, and are never read; they give their room back
        # as they arrive.
        last_word = Signal(range(LINE_WORDS))
        last_line = Signal.like(lines_held)
        m.d.comb += [last_word.eq(first_word + words[:_LINE_SHIFT - _WORD_SHIFT] - 1),
                     last_line.eq(lines_held - 1)]

        def covers(line, word):
            """Whether word ``word`` of the payload's line ``line`` is a payload word."""
            return (((line != 0) | (word >= first_word))
                    & ((line != last_line) | (word <= last_word)))

        def bank_addr(slot, word):
            """Where word ``word`` of slot ``slot`` is in its bank."""
            return Cat(word, slot[1:]) if slots > 2 else word

        # Each word written: PIO's, memory's, a hit's (at most one of each a cycle, the last two
        # in different banks), at its place in the buffer (a slot, a word in it).
        places = [(self.slot_data.valid, pio_slot, pio_word, self.slot_data.payload),
                  (memory_word, from_memory.slot, memory_word_at, self.dma_data.payload.data),
                  (hit_taken, answer_slot, hit_word, beat.data)]
        # (a plan's words are PIO's or DMA's: the data is chosen by the plan's kind and, for
        # DMA, by the bank memory's word goes to, not by the writes' valid, so that a PIO word
        # from the slot RAM goes through one multiplexer)
        for bank, write in enumerate(writes):
            dma_value = Mux(memory_word & (from_memory.slot[0] == bank), places[1][3],
                            places[2][3])
            m.d.comb += write.data.eq(Mux(dma, dma_value, places[0][3]))
            for valid, slot, word, _ in places:
                with m.If(valid & (slot[0] == bank)):
                    m.d.comb += [write.en.eq(1), write.addr.eq(bank_addr(slot, word))]
        dropped = Signal(2)
        written = Signal(slots * LINE_WORDS)
        drained = Signal()
        m.d.comb += [
            dropped.eq(Cat(memory_word & ~covers(from_memory.line, memory_word_at),
                           hit_taken & ~covers(lines_answered, hit_word))),
            written.eq(Mux(places[0][0], 1 << Cat(pio_word, pio_slot), 0)
                       | Mux(places[1][0], 1 << Cat(memory_word_at, from_memory.slot), 0)
                       | Mux(places[2][0], 1 << Cat(hit_word, answer_slot), 0)),
            # (the plan is not taken in its first cycle: its header has not gone)
            drained.eq(~dma | (lines_arrived == lines_held)),
        ]

        # Out of the buffer, in order, into the output register: the next word once it is in.
        read_at = Signal(range(slots * LINE_WORDS))
        load = Signal()
        m.d.comb += [
            read_at.eq(Cat(read_word, read_slot)),
            *(read.addr.eq(bank_addr(read_slot, read_word)) for read in reads),
            load.eq(fetching & (~out_valid | self.words.ready) & (moved != words)
                    & get_indexed(m, list(present), read_at, 1, "read_present")),
        ]
        with m.If(load):
            m.d.sync += [out_valid.eq(1),
                         self.words.payload.eq(Mux(read_slot[0], reads[1].data, reads[0].data))]
        with m.Elif(self.words.ready):
            m.d.sync += out_valid.eq(0)
        # The words in: set as written, cleared as read; a DMA line's slot is cleared as the
        # reads leave it, of the words the payload does not cover too.
        leaving = Signal()
        m.d.comb += leaving.eq(load & (read_word == LINE_WORDS - 1))
        slot_bits = Signal.like(present)
        m.d.comb += slot_bits.eq(Mux(leaving & dma, 0xFF << Cat(C(0, 3), read_slot), 0))
        m.d.sync += present.eq((present | written) & ~Mux(load, 1 << read_at, 0) & ~slot_bits)

        # The header, once per plan (see the class docstring); the plan, taken when it is done.
        m.d.comb += [
            self.header.payload.eq(plan.header),
            self.header.valid.eq(fetching & ~header_sent & (~dma | (words == 0) | out_valid)),
            # (a word moves only once it is in: all moved is all in)
            self.plan.ready.eq(header_sent & (moved == words)
                               & ~out_valid & drained),
        ]

        # Room claimed by a read or a probe (given back by a word sent or dropped).
        # (never more than there is: a claim is made only with the room for it)
        claimed, unclaimed = Signal.like(room), Signal.like(room)
        m.d.comb += [claimed.eq(Mux(probe, LINE_WORDS, pio_read)),
                     unclaimed.eq(room - claimed)]

        # The counts, restarted while no plan is in hand and when one is done.
        def advance(slot, word, step):
            """Step a (slot, word) place by ``step``: the next word, the next slot after the 8th."""
            with m.If(step):
                m.d.sync += word.eq(word + 1)
                with m.If(word == LINE_WORDS - 1):
                    m.d.sync += slot.eq(Mux(slot == slots - 1, 0, slot + 1))

        answered = self.ni_data.valid & self.ni_data.ready & beat.last
        with m.If(~self.plan.valid | self.plan.ready):
            m.d.sync += [room.eq(self.buffering * LINE_WORDS),
                         budget.eq(self.buffering * LINE_WORDS), words_read.eq(0),
                         lines_probed.eq(0),
                         lines_answered.eq(0), lines_arrived.eq(0),
                         header_sent.eq(0), moved.eq(0), present.eq(0),
                         read_slot.eq(0), pio_slot.eq(0),
                         pio_word.eq(0), answer_slot.eq(0), hit_word.eq(0),
                         memory_word_at.eq(0)]
        with m.Else():
            m.d.sync += [
                room.eq(unclaimed + popped + dropped[0] + dropped[1]),
                words_read.eq(words_read + pio_read),
                lines_probed.eq(lines_probed + probe),
                lines_answered.eq(lines_answered + answered),
                # (a hit's last word and memory's may come in the same cycle)
                lines_arrived.eq(lines_arrived + memory_done + (hit_taken & beat.last)),
                moved.eq(moved + load),
            ]
            # (the plan's fields stand from its first cycle, when no word is in yet)
            with m.If(first_cycle):
                m.d.sync += read_word.eq(Mux(dma, first_word, 0))
            advance(read_slot, read_word, load)
            advance(pio_slot, pio_word, self.slot_data.valid)
            advance(answer_slot, hit_word, hit_taken)
            with m.If(memory_done):
                m.d.sync += memory_word_at.eq(0)
            with m.Elif(memory_word):
                m.d.sync += memory_word_at.eq(memory_word_at + 1)
            with m.If(miss_taken):
                m.d.sync += answer_slot.eq(Mux(answer_slot == slots - 1, 0, answer_slot + 1))
            with m.If(self.header.valid & self.header.ready):
                m.d.sync += header_sent.eq(1)
        # (counted a cycle after the probe: the probe's logic comes late, after the plan's)
        probed = Signal()
        m.d.sync += [probed.eq(probe), self.count_dma_lines.eq(self.count_dma_lines + probed)]
        # The buffer's use by DMA plans: the words of its budget not in its room, every cycle.
        # (as wide as the counter: arithmetic on operands of one width lints clean)
        in_use = Signal.like(self.count_dma_buffer_word_cycles)
        m.d.comb += in_use.eq(budget - room)
        with m.If(fetching & dma):
            m.d.sync += [self.count_dma_cycles.eq(self.count_dma_cycles + 1),
                         self.count_dma_buffer_word_cycles.eq(
                             self.count_dma_buffer_word_cycles + in_use)]
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
