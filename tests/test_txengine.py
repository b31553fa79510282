"""Unit tests of the TX engine (rtl/txengine.py) in the Amaranth simulator, with a fake NI TLB,
MessageBuffer and memory, against the link format of behavioral/message.py."""

import dataclasses
import random
from collections import deque

import pytest

from behavioral.message import Message
from rtl.layouts import (LINE_WORDS, TX_COUNTERS, LineBeat, NiFault, NiFaultKind, SendDescriptor,
                         SendFlags, TlbResponse, TlbStatus, TxError, TxSlotWrite, TxStatus,
                         WordBeat, codec)
from rtl.params import silence_unused
from rtl.txengine import STEPS, TxEngine
from tests.sim import background, fsm_states, run, stream_put

MASK64 = (1 << 64) - 1


def memory_word(line, word):
    """What node memory holds at word ``word`` of physical line ``line``."""
    return (0x1000_0000_0000_0000 | line << 8 | word) & MASK64


def buffered_word(line, word):
    """What the MessageBuffer holds there (newer than memory: a different value)."""
    return (0xB000_0000_0000_0000 | line << 8 | word) & MASK64


class Send:
    """One send: the descriptor's fields, the payload (PIO) and when to ring."""

    def __init__(self, endpoint, *, dst_node=0, dst_endpoint=3, flags=0, length=8, key=0x1234,
                 remote_va=0x7000_0000_1000, local_va=0, metadata=0xFEED_0000_0000_0001,
                 asid=5, payload=None, rng=None):
        self.endpoint, self.asid = endpoint, asid
        self.fields = dict(dst_node=dst_node, dst_endpoint=dst_endpoint, flags=flags,
                           length=length, key=key, remote_va=remote_va, local_va=local_va,
                           metadata=metadata)
        rng = rng or random.Random(endpoint * 1000 + length)
        self.payload = payload if payload is not None else [
            rng.getrandbits(64) for _ in range(min(length, 2048) // 8)]

    def words(self):
        packed = codec(SendDescriptor).pack(**self.fields)
        return [(packed >> (64 * i)) & MASK64 for i in range(4)]


class Bench:
    """The engine with a fake OS, NI TLB, MessageBuffer, memory and link around it."""

    def __init__(self, *, node=1, nodes=4, endpoints=4, send_buffering=4, memory_latency=10,
                 memory_ready_percent=100, link_ready_percent=100, seed=0,
                 deadline_cycles=20_000):
        self.dut = TxEngine(node=node, nodes=nodes, endpoints=endpoints,
                            send_buffering=send_buffering)
        self.node = node
        self.memory_latency = memory_latency
        self.memory_ready_percent = memory_ready_percent
        self.link_ready_percent = link_ready_percent
        self.rng = random.Random(seed)
        self.deadline_cycles = deadline_cycles
        # (asid, vpn) -> ppn, or "no_read" for a page mapped without local read.
        self.tlb = {}
        self.buffered = set()       # physical lines the MessageBuffer holds
        self.miss_answers = deque()  # per TX_MISS: "fill" (map then retry) or "reject"
        self.pending_fills = {}     # (asid, vpn) -> ppn mapped on a "fill" answer
        # What happened, with the edge: flits, faults, lookups, probes, memory reads.
        self.flits, self.flit_edges = [], []
        self.faults, self.lookups, self.probes, self.reads = [], [], [], []
        self.doorbell_edges, self.answer_edges = [], []
        self.edge = 0
        self.done = False

    # The user side ------------------------------------------------------------------------------

    async def write_slot(self, ctx, send, *, payload=True):
        for word, value in enumerate(send.words()):
            await stream_put(ctx, self.dut.slot_write,
                             codec(TxSlotWrite).pack(endpoint=send.endpoint, descriptor=1,
                                                     word=word, data=value))
        if payload and not send.fields["flags"] & SendFlags.DMA.value:
            for word, value in enumerate(send.payload):
                await stream_put(ctx, self.dut.slot_write,
                                 codec(TxSlotWrite).pack(endpoint=send.endpoint, descriptor=0,
                                                         word=word, data=value))

    async def ring(self, ctx, send):
        await stream_put(ctx, self.dut.doorbell, {"endpoint": send.endpoint, "asid": send.asid})
        self.doorbell_edges.append(self.edge)

    def status(self, ctx, endpoint):
        return codec(TxStatus).unpack(ctx.get(self.dut.status[endpoint].as_value()))

    async def wait_idle(self, ctx, endpoint, limit=5000):
        for _ in range(limit):
            if not self.status(ctx, endpoint)["busy"]:
                return self.status(ctx, endpoint)
            await ctx.tick()
        raise AssertionError(f"endpoint {endpoint} still busy after {limit} cycles")

    async def send_together(self, ctx, sends):
        """Write every slot, then ring every doorbell, then wait for each send to end well."""
        for send in sends:
            await self.write_slot(ctx, send)
        for send in sends:
            await self.ring(ctx, send)
        for send in sends:
            assert (await self.wait_idle(ctx, send.endpoint))["error"] == TxError.NONE

    async def send(self, ctx, send):
        """Write the slot, ring, and wait for the send to end; return the STATUS."""
        await self.write_slot(ctx, send)
        await self.ring(ctx, send)
        return await self.wait_idle(ctx, send.endpoint)

    # The fakes ----------------------------------------------------------------------------------

    @background
    async def clock(self, ctx):
        async for _ in ctx.tick():
            self.edge += 1
            if self.done:
                return

    @background
    async def link(self, ctx):
        flits = self.dut.flits
        edge = 0
        async for _, _, valid, ready, data, last in ctx.tick().sample(
                flits.valid, flits.ready, flits.payload.data, flits.payload.last):
            edge += 1
            if valid and ready:
                self.flits.append((data, last))
                self.flit_edges.append(edge)
            ctx.set(flits.ready, self.rng.randrange(100) < self.link_ready_percent)
            if self.done:
                return

    @background
    async def translate(self, ctx):
        """The NI TLB's TX port: takes a lookup when none is in flight; answers 2 cycles after
        its transfer (valid from the cycle after the next edge), in order."""
        dut = self.dut
        ctx.set(dut.tlb_request.ready, 1)
        answer, due = None, None
        async for _, _, valid, ready, asid, va, answered in ctx.tick().sample(
                dut.tlb_request.valid, dut.tlb_request.ready, dut.tlb_request.payload.asid,
                dut.tlb_request.payload.va, dut.tlb_response.valid & dut.tlb_response.ready):
            if answered:
                answer = None
                ctx.set(dut.tlb_response.valid, 0)
            if valid and ready:
                self.lookups.append((self.edge, asid, va))
                answer, due = self._tlb_answer(asid, va), 1
            elif due is not None:
                due -= 1
            if answer is not None and due == 0:
                ctx.set(dut.tlb_response.valid, 1)
                ctx.set(dut.tlb_response.payload.as_value(), answer)
            ctx.set(dut.tlb_request.ready, answer is None)
            if self.done:
                return

    def _tlb_answer(self, asid, va):
        entry = self.tlb.get((asid, va >> 12))
        if entry is None:
            return codec(TlbResponse).pack(status=TlbStatus.MISS)
        if entry == "no_read":
            return codec(TlbResponse).pack(status=TlbStatus.PERMISSION_FAULT)
        return codec(TlbResponse).pack(status=TlbStatus.HIT, ppn=entry)

    @background
    async def os(self, ctx):
        """Takes faults; answers each TX_MISS, a few cycles later, as ``miss_answers`` says."""
        dut = self.dut
        ctx.set(dut.fault.ready, 1)
        countdown = None
        async for _, _, fault_taken, bits, answer_taken in ctx.tick().sample(
                dut.fault.valid & dut.fault.ready, dut.fault.payload.as_value(),
                dut.miss_answer.valid & dut.miss_answer.ready):
            if answer_taken:
                self.answer_edges.append(self.edge)
                ctx.set(dut.miss_answer.valid, 0)
            if fault_taken:
                fault = codec(NiFault).unpack(bits)
                self.faults.append(fault)
                if fault["kind"] == NiFaultKind.TX_MISS:
                    countdown, missed = 3, fault
            if countdown is not None:
                countdown -= 1
                if countdown == 0:
                    countdown = None
                    action = self.miss_answers.popleft()
                    if action == "fill":
                        key = (missed["asid"], missed["va"] >> 12)
                        self.tlb[key] = self.pending_fills.pop(key)
                    ctx.set(dut.miss_answer.valid, 1)
                    ctx.set(dut.miss_answer.payload.reject, action == "reject")
            if self.done:
                return

    def _answer_beats(self, line):
        if line in self.buffered:
            return [codec(LineBeat).pack(hit=1, data=buffered_word(line, i),
                                         last=int(i == LINE_WORDS - 1))
                    for i in range(LINE_WORDS)]
        return [codec(LineBeat).pack(hit=0, last=1)]

    @background
    async def msgbuf(self, ctx):
        """The MessageBuffer's ``ni_read`` port: takes a probe that has waited a cycle (the real
        buffer's registered tag compare), at most two ahead of the answers (the engine must not
        rely on one at a time); answers from the cycle after, a hit's words back to back."""
        probe, data = self.dut.ni_read, self.dut.ni_data
        answers = deque()           # the beats still to give, per probe taken
        async for _, _, valid, ready, addr, beat_taken in ctx.tick().sample(
                probe.valid, probe.ready, probe.payload.addr, data.valid & data.ready):
            if beat_taken:
                answers[0].popleft()
                if not answers[0]:
                    answers.popleft()
            if valid and ready:
                self.probes.append(addr)
                answers.append(deque(self._answer_beats(addr)))
            ctx.set(probe.ready, valid and not ready and len(answers) < 2)
            ctx.set(data.valid, bool(answers))
            if answers:
                ctx.set(data.payload.as_value(), answers[0][0])
            if self.done:
                return

    @background
    async def memory(self, ctx):
        """Node memory: takes a read per cycle (in ``memory_ready_percent`` of the cycles),
        answers each ``memory_latency`` cycles later with 8 words back to back, in order."""
        dut = self.dut
        ctx.set(dut.dma_read.ready, 1)
        waiting, current, edge = deque(), None, 0
        async for _, _, read, addr, valid, ready in ctx.tick().sample(
                dut.dma_read.valid & dut.dma_read.ready, dut.dma_read.payload.addr,
                dut.dma_data.valid, dut.dma_data.ready):
            edge += 1
            if self.memory_ready_percent < 100:
                ctx.set(dut.dma_read.ready, self.rng.randrange(100) < self.memory_ready_percent)
            if read:
                self.reads.append(addr)
                waiting.append((edge + self.memory_latency, addr))
            if valid and ready:
                current[1] += 1
                if current[1] == LINE_WORDS:
                    current = None
            if current is None and waiting and waiting[0][0] <= edge:
                current = [waiting.popleft()[1], 0]
            if self.done:
                return
            if current is None:
                ctx.set(dut.dma_data.valid, 0)
            else:
                line, word = current
                ctx.set(dut.dma_data.valid, 1)
                ctx.set(dut.dma_data.payload.as_value(),
                        codec(WordBeat).pack(data=memory_word(line, word),
                                             last=int(word == LINE_WORDS - 1)))

    def run(self, user, *monitors):
        """Simulate until the deadline, by which ``user`` must have returned (the fakes stop when
        it does)."""
        async def user_then_stop(ctx):
            await user(ctx)
            self.done = True

        run(self.dut, self.clock, self.link, self.translate, self.os, self.msgbuf, self.memory,
            *monitors, user_then_stop, deadline_cycles=self.deadline_cycles)

    # Expectations -------------------------------------------------------------------------------

    def map_pages(self, asid, va, pages, first_ppn):
        for index in range(pages):
            self.tlb[(asid, (va >> 12) + index)] = first_ppn + index

    def dma_payload(self, send):
        """The payload the engine should read for a DMA send (through ``tlb`` as it is now)."""
        words = []
        base = send.fields["local_va"] & ~7
        for index in range(send.fields["length"] // 8):
            va = base + 8 * index
            pa = self.tlb[(send.asid, va >> 12)] << 12 | (va & 0xFFF)
            line, word = pa >> 6, (pa >> 3) & 7
            words.append(buffered_word(line, word) if line in self.buffered
                         else memory_word(line, word))
        return words

    def expected(self, send, seq, words=None):
        fields = send.fields
        words = send.payload if words is None else words
        return Message(dst_node=fields["dst_node"], src_node=self.node,
                       dst_endpoint=fields["dst_endpoint"], src_endpoint=send.endpoint,
                       notify=bool(fields["flags"] & SendFlags.NOTIFY.value), seq=seq,
                       key=fields["key"], remote_va=fields["remote_va"],
                       metadata=fields["metadata"],
                       payload=b"".join(w.to_bytes(8, "little") for w in words))

    def messages(self):
        """The flits split at ``last`` and rebuilt (CRC and length checked)."""
        messages, current = [], []
        for flit in self.flits:
            current.append(flit)
            if flit[1]:
                messages.append(Message.from_flits(current))
                current = []
        assert not current, "a message was left unfinished"
        return messages

    def counter(self, ctx, name):
        return ctx.get(getattr(self.dut, f"count_{name}"))


def message_edges(bench):
    """Return (first, last) flit edges of each message."""
    spans, first = [], None
    for (_, last), edge in zip(bench.flits, bench.flit_edges):
        first = edge if first is None else first
        if last:
            spans.append((first, edge))
            first = None
    return spans


# PIO ------------------------------------------------------------------------------------------

def test_pio_8_bytes_and_its_latency():
    """An 8-byte PIO send: the message as the link format says, STATUS and counters after, and
    the doorbell-to-first-flit latency of the docstring (4, within the 6-cycle target)."""
    bench = Bench()
    send = Send(2, dst_node=3, dst_endpoint=7, flags=SendFlags.NOTIFY.value, length=8)
    result = {}

    async def user(ctx):
        result["status"] = await bench.send(ctx, send)
        await ctx.tick().repeat(5)
        result["sent"] = bench.counter(ctx, "sent")
        result["refused"] = bench.counter(ctx, "refused")

    bench.run(user)
    assert bench.messages() == [bench.expected(send, seq=0)]
    assert result["status"] == {"busy": 0, "error": TxError.NONE, "sent": 1}
    assert (result["sent"], result["refused"]) == (1, 0)
    latency = bench.flit_edges[0] - bench.doorbell_edges[0]
    print(f"PIO 8 B: doorbell to first flit {latency} cycles")
    assert latency == 4
    assert not bench.lookups and not bench.probes and not bench.reads


def test_pio_2_kib_streams_back_to_back():
    """A 2 KiB PIO message leaves at one flit per cycle: 260 flits in 260 cycles."""
    bench = Bench()
    send = Send(1, length=2048)

    async def user(ctx):
        await bench.send(ctx, send)

    bench.run(user)
    assert bench.messages() == [bench.expected(send, seq=0)]
    (first, last), = message_edges(bench)
    flits = len(bench.flits)
    print(f"PIO 2 KiB: {flits} flits in {last - first + 1} cycles "
          f"({flits / (last - first + 1):.1%} of the link)")
    assert flits / (last - first + 1) >= 0.95


def test_the_largest_sends_leave_nothing_behind_for_the_next():
    """A 2 KiB PIO send (256 words, the slot's all), then a 2 KiB DMA send starting mid-line
    (33 lines, the most a payload spans), each followed by a short send: every count reaches its
    largest value and stops there, so that each message is whole and the next starts clean."""
    bench = Bench()
    local_va = 0x12_3000 + 0x238
    bench.map_pages(9, local_va, 2, first_ppn=0x456)
    sends = [Send(1, length=2048), Send(1, length=16, dst_node=1),
             Send(2, flags=SendFlags.DMA.value, length=2048, local_va=local_va, asid=9),
             Send(2, flags=SendFlags.DMA.value, length=16, local_va=0x12_3100, asid=9,
                  dst_node=2)]

    async def user(ctx):
        for send in sends:
            assert (await bench.send(ctx, send))["error"] == TxError.NONE

    bench.run(user)
    dma = [bench.dma_payload(send) for send in sends[2:]]
    assert bench.messages() == [bench.expected(sends[0], 0), bench.expected(sends[1], 0),
                                bench.expected(sends[2], 1, dma[0]),
                                bench.expected(sends[3], 0, dma[1])]
    assert len(bench.probes) == 33 + 1


def test_zero_length_sends_header_and_trailer_only():
    """Length 0, PIO or DMA, from an aligned or a mid-line ``local_va``: header and trailer, no
    lookup, probe or read (a mid-line empty DMA send once read the line at whatever frame the
    engine last translated; the formal TX proof found it)."""
    bench = Bench()
    sends = [Send(0, length=0), Send(1, length=0, flags=SendFlags.DMA.value, local_va=0x5000),
             Send(2, length=0, flags=SendFlags.DMA.value, local_va=0x5028)]

    async def user(ctx):
        for send in sends:
            assert (await bench.send(ctx, send))["error"] == TxError.NONE

    bench.run(user)
    assert bench.messages() == [bench.expected(send, seq=seq) for seq, send in enumerate(sends)]
    assert len(bench.flits) == 3 * 4
    assert not bench.lookups and not bench.probes and not bench.reads


# Refusals -------------------------------------------------------------------------------------

REFUSALS = [
    ("length not a multiple of 8", dict(length=12), TxError.BAD_LENGTH),
    ("length above 2 KiB", dict(length=2056), TxError.BAD_LENGTH),
    ("length checked before node", dict(length=4, dst_node=9), TxError.BAD_LENGTH),
    ("node not in the system", dict(dst_node=4), TxError.BAD_NODE),
    ("node checked before flags", dict(dst_node=15, flags=0x80), TxError.BAD_NODE),
    ("unknown flag", dict(flags=SendFlags.DMA.value | 0x04), TxError.BAD_FLAGS),
]


@pytest.mark.parametrize("fields, error", [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_refusal_sends_nothing_and_the_slot_is_reusable(fields, error):
    """A bad descriptor is refused with its error (checked in the contract's order): busy low,
    no flit, no lookup, counted; the slot can be written and rung again at once."""
    bench = Bench(nodes=4)
    bad = Send(3, **fields)
    good = Send(3, length=16)
    result = {}

    async def user(ctx):
        result["bad"] = await bench.send(ctx, bad)
        await ctx.tick().repeat(10)
        result["flits_after_bad"] = len(bench.flits)
        result["refused"] = bench.counter(ctx, "refused")
        result["good"] = await bench.send(ctx, good)

    bench.run(user)
    assert result["bad"] == {"busy": 0, "error": error, "sent": 0}
    assert result["flits_after_bad"] == 0 and result["refused"] == 1
    assert result["good"] == {"busy": 0, "error": TxError.NONE, "sent": 1}
    # A refused send takes no sequence number.
    assert bench.messages() == [bench.expected(good, seq=0)]
    assert not bench.lookups and not bench.faults


# DMA ------------------------------------------------------------------------------------------

def test_dma_unaligned_across_a_page_with_buffered_lines():
    """A DMA payload starting mid-line and crossing into the next page: both pages translated
    before any flit, lines probed in order, the buffered ones (the newest copy) taken from the
    MessageBuffer, the others read from memory, and only the covered words sent."""
    bench = Bench()
    local_va = 0x12_3000 + 0xFC8            # 7 words before the page's end, mid-line
    send = Send(1, flags=SendFlags.DMA.value | SendFlags.NOTIFY.value, length=400,
                local_va=local_va, asid=9)
    bench.map_pages(9, local_va, 2, first_ppn=0x456)
    lines = [0x456 << 6 | 0x3F] + [0x457 << 6 | i for i in range(6)]
    bench.buffered = {lines[0], lines[2], lines[3]}
    result = {}

    async def user(ctx):
        result["status"] = await bench.send(ctx, send)
        await ctx.tick().repeat(20)
        result["lines"] = bench.counter(ctx, "dma_lines")

    bench.run(user)
    assert bench.messages() == [bench.expected(send, seq=0, words=bench.dma_payload(send))]
    assert result["status"]["error"] == TxError.NONE
    assert [va for _, _, va in bench.lookups] == [0x12_3000, 0x12_4000]
    assert all(asid == 9 for _, asid, _ in bench.lookups)
    assert bench.lookups[-1][0] < bench.flit_edges[0]
    assert bench.probes == lines and result["lines"] == len(lines)
    assert bench.reads == [line for line in lines if line not in bench.buffered]


def test_dma_lines_follow_the_first_word_and_the_length():
    """DMA sends from every kind of start in a line and of length: the lines probed (and read)
    are exactly those from the first word's to the last word's, and each payload is sent whole."""
    bench = Bench()
    bench.map_pages(9, 0x12_3000, 1, first_ppn=0x456)
    sends = [Send(1, flags=SendFlags.DMA.value, length=8 * words,
                  local_va=0x12_3000 + 0x80 * index + 8 * first, asid=9)
             for index, (first, words) in enumerate(
                 (first, words) for first in (0, 1, 5, 7) for words in (1, 3, 6, 8, 9, 17))]

    async def user(ctx):
        for send in sends:
            assert (await bench.send(ctx, send))["error"] == TxError.NONE

    bench.run(user)
    assert bench.messages() == [bench.expected(send, seq, words=bench.dma_payload(send))
                                for seq, send in enumerate(sends)]
    spanned = [0x456 << 6 | line for send in sends
               for line in range((send.fields["local_va"] & 0xFFF) >> 6,
                                 ((send.fields["local_va"] & 0xFFF) + send.fields["length"] - 1
                                  >> 6) + 1)]
    assert bench.probes == spanned


def test_dma_payload_ending_at_its_page_end_translates_that_page_only():
    """A DMA payload whose last byte is its page's last: one lookup, so that the next page,
    not mapped, is never asked for and the send goes out."""
    bench = Bench()
    local_va = 0x12_3000 + 0x1000 - 40
    bench.map_pages(9, local_va, 1, first_ppn=0x456)
    send = Send(1, flags=SendFlags.DMA.value, length=40, local_va=local_va, asid=9)
    result = {}

    async def user(ctx):
        result["status"] = await bench.send(ctx, send)

    bench.run(user)
    assert result["status"]["error"] == TxError.NONE and bench.faults == []
    assert [va for _, _, va in bench.lookups] == [0x12_3000]
    assert bench.messages() == [bench.expected(send, seq=0, words=bench.dma_payload(send))]


def test_dma_header_waits_for_the_first_payload_word():
    """With memory 40 cycles away, a DMA message still goes out without a gap between its
    header and its first payload word: the memory's latency comes before the header, not in the
    middle of the message, where it would hold the Fabric's wormhole path idle."""
    bench = Bench(memory_latency=40)
    bench.map_pages(9, 0x12_3000, 1, first_ppn=0x456)
    send = Send(1, flags=SendFlags.DMA.value, length=64, local_va=0x12_3000, asid=9)

    async def user(ctx):
        assert (await bench.send(ctx, send))["error"] == TxError.NONE

    bench.run(user)
    assert bench.messages() == [bench.expected(send, seq=0, words=bench.dma_payload(send))]
    assert bench.reads and bench.flit_edges[0] > bench.doorbell_edges[0] + 40
    first = bench.flit_edges[0]
    assert bench.flit_edges == list(range(first, first + len(bench.flits)))


def test_dma_from_a_memory_that_takes_reads_at_random_loses_no_line(seed):
    """Memory takes a read in a third of the cycles: every line missed in the MessageBuffer is
    read once, in order, and the payload (lines from memory and from the buffer mixed) is whole."""
    bench = Bench(memory_ready_percent=33, seed=seed)
    local_va = 0x12_3000 + 0x28
    bench.map_pages(9, local_va, 1, first_ppn=0x456)
    lines = [0x456 << 6 | i for i in range(17)]
    bench.buffered = {lines[3], lines[7], lines[8], lines[15]}
    send = Send(1, flags=SendFlags.DMA.value, length=1024, local_va=local_va, asid=9)

    async def user(ctx):
        assert (await bench.send(ctx, send))["error"] == TxError.NONE

    bench.run(user)
    assert bench.messages() == [bench.expected(send, 0, bench.dma_payload(send))], f"seed {seed}"
    assert bench.reads == [line for line in lines if line not in bench.buffered], f"seed {seed}"


def test_a_send_after_a_dma_from_buffered_lines_starts_at_once():
    """A DMA send whose lines all come from the MessageBuffer, a PIO send rung behind it: the DMA
    send counts its lines as each one's last word comes in, so that it is done with its trailer
    and the next send's first flit follows within 8 cycles."""
    bench = Bench()
    bench.map_pages(9, 0x12_3000, 1, first_ppn=0x456)
    bench.buffered = {0x456 << 6 | line for line in range(4)}
    sends = [Send(1, flags=SendFlags.DMA.value, length=40, local_va=0x12_3048, asid=9),
             Send(2, length=8, dst_node=1)]

    async def user(ctx):
        await bench.send_together(ctx, sends)

    bench.run(user)
    assert bench.messages() == [bench.expected(sends[0], 0, bench.dma_payload(sends[0])),
                                bench.expected(sends[1], 0)]
    (_, dma_last), (pio_first, _) = message_edges(bench)
    assert pio_first - dma_last <= 8


def test_dma_permission_fault_refuses():
    """A page the sender may not read: TX_PERMISSION fault with the page, DMA_FAULT, no
    flit and no probe."""
    bench = Bench(node=2)
    local_va = 0x40_0FF0
    send = Send(0, flags=SendFlags.DMA.value, length=64, local_va=local_va, asid=3)
    bench.tlb[(3, 0x400)] = 0x11
    bench.tlb[(3, 0x401)] = "no_read"

    async def user(ctx):
        status = await bench.send(ctx, send)
        assert status == {"busy": 0, "error": TxError.DMA_FAULT, "sent": 0}
        await ctx.tick().repeat(10)
        assert bench.counter(ctx, "refused") == 1

    bench.run(user)
    assert bench.faults == [{"kind": NiFaultKind.TX_PERMISSION, "endpoint": 0, "asid": 3,
                             "va": 0x40_1000, "node": 2}]
    assert not bench.flits and not bench.probes and not bench.reads


def test_dma_miss_then_retry_sends_after_the_answer():
    """A miss on the second page: TX_MISS fault, then after the OS's fill and retry every page
    is looked up again and the message goes; no flit before the answer."""
    bench = Bench()
    local_va = 0x8_0F80
    send = Send(2, flags=SendFlags.DMA.value, length=256, local_va=local_va, asid=4)
    bench.tlb[(4, 0x80)] = 0x20
    bench.pending_fills[(4, 0x81)] = 0x99
    bench.miss_answers.append("fill")
    result = {}

    async def user(ctx):
        result["status"] = await bench.send(ctx, send)
        await ctx.tick().repeat(5)
        result["misses"] = bench.counter(ctx, "misses")

    bench.run(user)
    assert bench.faults == [{"kind": NiFaultKind.TX_MISS, "endpoint": 2, "asid": 4,
                             "va": 0x8_1000, "node": 1}]
    assert result["status"] == {"busy": 0, "error": TxError.NONE, "sent": 1}
    assert result["misses"] == 1
    assert [va for _, _, va in bench.lookups] == [0x8_0000, 0x8_1000, 0x8_0000, 0x8_1000]
    assert bench.flit_edges[0] > bench.answer_edges[0]
    assert bench.messages() == [bench.expected(send, seq=0, words=bench.dma_payload(send))]


def test_dma_miss_then_reject_refuses():
    """A miss the OS rejects: DMA_REJECTED, nothing sent; the slot works again after."""
    bench = Bench()
    send = Send(1, flags=SendFlags.DMA.value, length=64, local_va=0x3000, asid=6)
    good = Send(1, length=8)
    bench.miss_answers.append("reject")

    async def user(ctx):
        status = await bench.send(ctx, send)
        assert status == {"busy": 0, "error": TxError.DMA_REJECTED, "sent": 0}
        assert not bench.flits
        assert (await bench.send(ctx, good))["error"] == TxError.NONE

    bench.run(user)
    assert [fault["kind"] for fault in bench.faults] == [NiFaultKind.TX_MISS]
    assert not bench.probes and not bench.reads
    assert bench.messages() == [bench.expected(good, seq=0)]


# Scheduling and sequence numbers --------------------------------------------------------------

def test_seq_counts_per_destination():
    """Each destination node has its own sequence, from 0."""
    bench = Bench(nodes=4)
    destinations = [1, 2, 1, 3, 1, 2]
    sends = [Send(index % 4, dst_node=node, length=8 * index)
             for index, node in enumerate(destinations)]

    async def user(ctx):
        for send in sends:
            await bench.send(ctx, send)

    bench.run(user)
    assert [m.seq for m in bench.messages()] == [0, 0, 1, 0, 2, 1]
    assert bench.messages() == [bench.expected(send, seq)
                                for send, seq in zip(sends, [0, 0, 1, 0, 2, 1])]


def test_doorbelled_endpoints_are_served_round_robin():
    """While endpoint 0 sends, 3 then 1 are rung: 1 goes next (round robin from 0, not doorbell
    order). While 1 sends, 0 is rung again: 3 goes before it (round robin from 2, not a fixed
    priority, which would starve 3)."""
    bench = Bench(endpoints=4)
    first = {e: Send(e, length=512) for e in (0, 1, 3)}
    again = Send(0, length=8, dst_node=2)

    async def user(ctx):
        for send in first.values():
            await bench.write_slot(ctx, send)
        await bench.ring(ctx, first[0])
        await ctx.tick().repeat(10)
        await bench.ring(ctx, first[3])
        await bench.ring(ctx, first[1])
        await bench.wait_idle(ctx, 0)            # 1 is picked now, and takes 70 cycles
        await bench.write_slot(ctx, again)
        await bench.ring(ctx, again)
        assert bench.status(ctx, 1)["busy"]
        for endpoint in range(4):
            await bench.wait_idle(ctx, endpoint)

    bench.run(user)
    assert [m.src_endpoint for m in bench.messages()] == [0, 1, 3, 0]


@pytest.mark.parametrize("endpoints", [2, 3, 5])
def test_each_endpoint_has_its_own_slot_and_writes_naming_no_slot_word_change_nothing(endpoints):
    """Every endpoint's slot is written before any doorbell, then writes that name no slot word:
    to the endpoint number past the last (descriptor and payload), and to descriptor words past
    the descriptor's. Each message carries its own endpoint's descriptor and payload."""
    bench = Bench(endpoints=endpoints)
    sends = [Send(e, dst_endpoint=e % 4, length=8 * (e + 2), metadata=0xFEED_0000_0000_0100 + e)
             for e in range(endpoints)]
    stray = [dict(endpoint=endpoints, descriptor=descriptor, word=word)
             for descriptor in (1, 0) for word in (0, 1)]
    stray += [dict(endpoint=e, descriptor=1, word=word)
              for e in range(endpoints) for word in (4, 5)]

    async def user(ctx):
        for send in sends:
            await bench.write_slot(ctx, send)
        for fields in stray:
            await stream_put(ctx, bench.dut.slot_write,
                             codec(TxSlotWrite).pack(data=MASK64, **fields))
        for send in sends:
            await bench.ring(ctx, send)
        for endpoint in range(endpoints):
            await bench.wait_idle(ctx, endpoint)

    bench.run(user)
    messages = sorted(bench.messages(), key=lambda message: message.src_endpoint)
    assert sorted(message.seq for message in messages) == list(range(endpoints))
    assert messages == [bench.expected(send, message.seq)
                        for send, message in zip(sends, messages)]


def test_the_slot_takes_nothing_from_the_bus_while_no_write_is_offered():
    """After the slot is written, the slot-write bus carries a payload write that is not offered
    (valid low) for a few cycles: the slot keeps what was written, and the send carries it."""
    bench = Bench()
    send = Send(0, length=16)

    async def user(ctx):
        await bench.write_slot(ctx, send)
        ctx.set(bench.dut.slot_write.payload.as_value(),
                codec(TxSlotWrite).pack(endpoint=0, descriptor=0, word=1, data=MASK64))
        await ctx.tick().repeat(4)
        await bench.ring(ctx, send)
        assert (await bench.wait_idle(ctx, 0))["error"] == TxError.NONE

    bench.run(user)
    assert bench.messages() == [bench.expected(send, 0)]


def test_dma_words_after_the_payload_do_not_leak_into_the_next_send():
    """With one line of prefetch the last line comes just in time: its words after the payload
    still arrive after the trailer, and must not be taken for the next send's."""
    bench = Bench(send_buffering=1, memory_latency=10)
    bench.map_pages(1, 0x6000, 1, first_ppn=0x60)
    sends = [Send(0, flags=SendFlags.DMA.value, length=72, local_va=0x6000, asid=1),
             Send(1, flags=SendFlags.DMA.value, length=72, local_va=0x6200, asid=1),
             Send(2, length=24)]

    async def user(ctx):
        await bench.send_together(ctx, sends)

    bench.run(user)
    assert bench.messages() == [
        bench.expected(sends[0], 0, bench.dma_payload(sends[0])),
        bench.expected(sends[1], 1, bench.dma_payload(sends[1])),
        bench.expected(sends[2], 2)]


def test_link_backpressure_loses_nothing(seed):
    """A link ready 40 % of the time, PIO and DMA sends from several endpoints rung together:
    every message whole and in the right form."""
    bench = Bench(link_ready_percent=40, seed=seed, memory_latency=7, send_buffering=2)
    rng = random.Random(seed)
    bench.map_pages(1, 0x10_0000, 3, first_ppn=0x300)
    bench.buffered = {0x300 << 6 | i for i in range(0, 64, 3)} | {0x301 << 6 | 1}
    sends = []
    for endpoint in range(4):
        length = 8 * rng.randrange(0, 257)
        if endpoint % 2:
            sends.append(Send(endpoint, flags=SendFlags.DMA.value, length=length, asid=1,
                              local_va=0x10_0000 + 8 * rng.randrange(0, 1024)))
        else:
            sends.append(Send(endpoint, length=length, rng=rng))

    async def user(ctx):
        for send in sends:
            await bench.write_slot(ctx, send)
        for send in sends:
            await bench.ring(ctx, send)
        for send in sends:
            assert (await bench.wait_idle(ctx, send.endpoint, limit=20_000))["error"] \
                == TxError.NONE, f"seed {seed}"

    bench.run(user)
    expected = {send.endpoint: bench.expected(
        send, 0, bench.dma_payload(send) if send.fields["flags"] else None) for send in sends}
    got = bench.messages()
    assert sorted(m.src_endpoint for m in got) == [0, 1, 2, 3], f"seed {seed}"
    seqs = iter(range(4))
    for message in got:
        want = expected[message.src_endpoint]
        assert message == dataclasses.replace(want, seq=next(seqs)), f"seed {seed}"


# DMA bandwidth --------------------------------------------------------------------------------

@pytest.mark.parametrize("buffered", ["none", "all", "alternate"])
def test_dma_2_kib_bandwidth(buffered):
    """2 KiB by DMA from memory answering 10 cycles after a read, send_buffering 4: at least
    95 % of the link from first flit to last whether every line comes from memory, every line
    from the MessageBuffer or the lines alternate between the two (each line's words go into its
    slot of the prefetch buffer as they come); and the fetch never runs more than send_buffering
    lines ahead of the wire."""
    bench = Bench(send_buffering=4, memory_latency=10)
    local_va = 0x20_0000
    bench.map_pages(2, local_va, 1, first_ppn=0x777)
    all_lines = [0x777 << 6 | i for i in range(32)]
    bench.buffered = {"none": set(), "all": set(all_lines),
                      "alternate": set(all_lines[::2])}[buffered]
    send = Send(0, flags=SendFlags.DMA.value, length=2048, local_va=local_va, asid=2)
    log = []

    async def user(ctx):
        await bench.send(ctx, send)

    @background
    async def ahead(ctx):
        # Lines probed against payload flits sent, at every edge.
        probes = flits = 0
        dut = bench.dut
        async for _, _, probed, sent, data_flit in ctx.tick().sample(
                dut.ni_read.valid & dut.ni_read.ready, dut.flits.valid & dut.flits.ready,
                dut.flits.valid & ~dut.flits.payload.last):
            probes += probed
            flits += sent and data_flit
            log.append(probes * 8 - max(0, flits - 3))
            if bench.done:
                return

    bench.run(user, ahead)
    assert bench.messages() == [bench.expected(send, seq=0, words=bench.dma_payload(send))]
    (first, last), = message_edges(bench)
    flits = len(bench.flits)
    ratio = flits / (last - first + 1)
    print(f"DMA 2 KiB, buffered lines {buffered}: {flits} flits in {last - first + 1} cycles "
          f"({ratio:.1%} of the link); doorbell to first flit "
          f"{first - bench.doorbell_edges[0]} cycles")
    assert ratio >= 0.95
    assert max(log) <= 4 * LINE_WORDS


# Parameters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("params, error, text", [
    (dict(node=16), ValueError, "node must be between 0 and 15, not 16"),
    (dict(nodes=1), ValueError, "nodes must be between 2 and 16, not 1"),
    (dict(endpoints=17), ValueError, "endpoints must be between 1 and 16, not 17"),
    (dict(send_buffering=0), ValueError, "send_buffering must be between 1 and 16, not 0"),
    (dict(asid_bits=0), ValueError, "asid_bits must be between 1 and 16, not 0"),
    (dict(endpoints="8"), TypeError, "endpoints must be an integer, not '8'"),
])
def test_bad_parameters_raise_naming_themselves(params, error, text):
    with pytest.raises(error, match=text):
        TxEngine(**params)


def test_default_parameters():
    engine = TxEngine()
    assert (engine.node, engine.nodes, engine.endpoints, engine.send_buffering,
            engine.asid_bits) == (0, 2, 8, 4, 8)
    assert "node_id" not in engine.signature.members and len(engine.status) == 8
    assert all(len(getattr(engine, f"count_{name}")) == 32 for name in TX_COUNTERS)
    silence_unused(engine)


@pytest.mark.parametrize("params", [dict(endpoints=1, nodes=16, send_buffering=1),
                                    dict(endpoints=16, nodes=2, send_buffering=16)])
def test_parameter_corners_send(params):
    """One endpoint (no arbitration to speak of) and 16; the smallest and largest prefetch."""
    bench = Bench(nodes=params["nodes"], endpoints=params["endpoints"],
                  send_buffering=params["send_buffering"])
    bench.map_pages(1, 0x5000, 1, first_ppn=0x42)
    last = params["endpoints"] - 1
    sends = [Send(last, length=72, dst_node=params["nodes"] - 1),
             Send(last, flags=SendFlags.DMA.value, length=200, local_va=0x5038, asid=1)]

    async def user(ctx):
        for send in sends:
            assert (await bench.send(ctx, send))["error"] == TxError.NONE

    bench.run(user)
    assert bench.messages() == [bench.expected(sends[0], 0),
                                bench.expected(sends[1], 0, bench.dma_payload(sends[1]))]


def test_the_stall_report_names_the_steps_in_their_encoding_order():
    assert fsm_states(TxEngine(), "step") == STEPS
