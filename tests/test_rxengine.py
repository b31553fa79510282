"""Unit tests of the RX engine (rtl/rxengine.py) in the Amaranth simulator: messages from
behavioral/message.py in, a fake NI TLB answering lookups two cycles after each request from a
page table per ASID, and a fake MessageBuffer recording every line written."""

import random
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Fragment, Value

from behavioral.message import Message
from rtl.layouts import (COMPLETION_BYTES, COMPLETION_WORDS, ENDPOINT_BITS, FLIT_BYTES,
                         HEADER_FLITS, LINE_BYTES, MAX_PAYLOAD_BYTES, NODE_BITS, PAGE_BITS,
                         RX_COUNTERS, Completion, CompletionEntry, CompletionStatus, EndpointEntry,
                         Flit, MessageHeader, MissAnswer, NiFault, NiFaultKind, RxFillBeat,
                         RxLineRequest, TlbResponse, TlbStatus, Trailer, codec, tlb_lookup_layout)
from rtl.params import silence_unused
from rtl.rxengine import QUEUED_JOBS, STAGING_WORDS, RxEngine
from tests.sim import background, run, stream_put

NODE = 1
ENDPOINTS = 4
ASID = 0x5a
KEY = 0x1234
RING_PA = 0x8000_0040       # COMPLETION_BYTES aligned, not line aligned: entries fill lines
RING_VA = 0x7f00_0000_1040
PAGE = 1 << PAGE_BITS

LOOKUP = codec(tlb_lookup_layout(8))


def endpoint_entry(index, *, ring_log2=4, enabled=True):
    """Endpoint ``index``'s table entry: an ASID (``ASID + index``) and a ring of its own."""
    return codec(EndpointEntry).pack(enabled=enabled, asid=ASID + index, thread=index,
                                     ring_log2=ring_log2, ring_pa=RING_PA + 0x1000 * index,
                                     ring_va=RING_VA + 0x1000 * index)


def ppn_of(va, asid):
    """The fake page tables, one per ASID: every page maps to a frame derived from its number and
    the ASID, so that a VA is a different frame in each endpoint's address space."""
    return (0x40000 + (asid << 12) + (va >> PAGE_BITS) * 7) & 0xfffff


def hit(asid, va, key):
    """The fake NI TLB: every page of an endpoint's ASID hits; nothing of any other ASID is
    mapped."""
    if asid - ASID not in range(ENDPOINTS):
        return TlbStatus.MISS, 0
    return TlbStatus.HIT, ppn_of(va, asid)


def message(*, payload_bytes=8, remote_va=0x1000_0000, dst_endpoint=0, notify=True, seq=7,
            rng=None, **fields):
    rng = rng or random.Random(payload_bytes)
    return Message(dst_node=NODE, src_node=3, dst_endpoint=dst_endpoint, src_endpoint=2,
                   notify=notify, seq=seq, key=KEY, remote_va=remote_va,
                   metadata=0xfeed_0000_0000_beef, payload=rng.randbytes(payload_bytes),
                   **fields)


def raw_flits(*, length, words, last_at=None, bad_crc=False, **header):
    """Flits of a message built field by field, so that the header may lie: ``length`` in the
    header, ``words`` payload words sent, the CRC right (unless ``bad_crc``) over what is sent,
    ``last`` on the trailer (or on flit ``last_at``, which then ends the message)."""
    fields = dict(dst_node=NODE, src_node=3, dst_endpoint=0, kind=0, length=length, key=KEY,
                  remote_va=0x1000_0000)
    fields.update(header)
    header_bits = codec(MessageHeader).pack(**fields)
    data = [(header_bits >> (64 * i)) & ((1 << 64) - 1) for i in range(HEADER_FLITS)]
    data += [0x1111_0000_0000_0000 + i for i in range(words)]
    if last_at is not None:
        data = data[:last_at]
    sent = b"".join(word.to_bytes(8, "little") for word in data)
    data.append(codec(Trailer).pack(crc=zlib.crc32(sent) ^ (1 if bad_crc else 0)))
    return [(word, index == len(data) - 1) for index, word in enumerate(data)]


@dataclass
class Result:
    """What came out of one simulation, each event with the clock edge it happened at."""
    last_flits: list = field(default_factory=list)      # edges of trailers taken
    flit_edges: list = field(default_factory=list)      # edges of every flit taken
    lines: list = field(default_factory=list)           # (edge, RxLineRequest fields)
    beats: list = field(default_factory=list)           # (edge, RxFillBeat fields)
    faults: list = field(default_factory=list)          # (edge, NiFault fields)
    completions: list = field(default_factory=list)     # (edge, Completion fields)
    completion_offered: list = field(default_factory=list)   # first edge each one was valid
    tail_changes: list = field(default_factory=list)    # (first edge that saw them, ring tails)
    lines_done: list = field(default_factory=list)      # edges at which lines were released
    lookups: list = field(default_factory=list)         # (edge, lookup fields)
    # per announcement, the line ``rx_next`` named in the cycle before it was first offered
    # (None: not valid)
    hints: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)
    tails: list = field(default_factory=list)

    def hint_misses(self):
        """Return the announcements (index, hinted, announced) that ``rx_next`` named wrongly
        ahead of them, and how many it named."""
        named = [(index, hint, line["addr"])
                 for index, (hint, (_, line)) in enumerate(zip(self.hints, self.lines))
                 if hint is not None]
        return [miss for miss in named if miss[1] != miss[2]], len(named)

    def fills(self):
        """Return the lines written, in order, as (announce edge, addr, mask, [(edge, word,
        data)]), checking the fill protocol on the way."""
        fills = [(edge, line["addr"], line["words"], []) for edge, line in self.lines]
        current = 0
        for edge, beat in self.beats:
            assert current < len(fills), "a word came for no announced line"
            announced, _, mask, words = fills[current]
            assert edge > announced, "a line's words came before its announcement was taken"
            words.append((edge, beat["word"], beat["data"]))
            if beat["last"]:
                current += 1
        assert current == len(fills), "a line was announced but never completed"
        for _, addr, mask, words in fills:
            written = [word for _, word, _ in words]
            assert written == sorted(written), f"line {addr:#x}: words out of order"
            assert sum(1 << word for word in written) == mask, f"line {addr:#x}: mask {mask:#x}"
            assert len(set(written)) == len(written)
        return fills

    def memory(self):
        """Return ``{physical word address: data}`` of everything written."""
        return {(addr * LINE_BYTES + word * FLIT_BYTES) // FLIT_BYTES: data
                for _, addr, _, words in self.fills() for _, word, data in words}

    def fault_kinds(self):
        return [fault["kind"] for _, fault in self.faults]


class Bench:
    """The engine with a fake NI TLB, a fake MessageBuffer and fake OS and Notifier.

    ``tlb(asid, va, key)`` answers each lookup ``(status, ppn)``; ``answers`` are the OS's miss
    answers in order (True: reject); ``ready_percent`` makes the MessageBuffer, fault and
    completion sinks ready at random; ``line_ready(edge)``, if given, says when the
    MessageBuffer takes line announcements; it releases each line (``lines_done``) in order,
    one a cycle, ``line_latency`` cycles after the cycle after its last word and not before edge
    ``lines_from``; ``head_writes`` are ``(edge, endpoint, head)``; ``ring_resets`` are
    ``(edge, mask)`` one-cycle pulses.
    """

    def __init__(self, *, endpoints=ENDPOINTS, tlb=hit, answers=(), entries=None,
                 ready_percent=100, line_ready=None, line_latency=0, lines_from=0, rng=None,
                 head_writes=(), ring_resets=(), gap_cycles=0):
        self.dut = RxEngine(node=NODE, endpoints=endpoints)
        self.tlb = tlb
        self.answers = list(answers)
        self.entries = entries or [endpoint_entry(i) for i in range(endpoints)]
        self.ready_percent = ready_percent
        self.line_ready = line_ready
        self.line_latency = line_latency
        self.lines_from = lines_from
        self.rng = rng or random.Random(0)
        self.head_writes = sorted(head_writes)
        self.ring_resets = sorted(ring_resets)
        self.gap_cycles = gap_cycles

    def run(self, messages, *, cycles=None):
        """Send ``messages`` (each a :class:`Message` or a list of ``(data, last)`` flits)."""
        dut, result = self.dut, Result()
        flit_lists = [m.flits() if isinstance(m, Message) else m for m in messages]
        cycles = cycles or 3 * sum(len(flits) for flits in flit_lists) + 60 * len(messages) + 200

        async def link(ctx):
            for entry, view in zip(self.entries, dut.endpoints):
                ctx.set(Value.cast(view), entry)
            for flits in flit_lists:
                for data, last in flits:
                    await stream_put(ctx, dut.flits, codec(Flit).pack(data=data, last=last))
                await ctx.tick().repeat(self.gap_cycles) if self.gap_cycles else None

        @background
        async def tlb(ctx):
            pending = deque()
            ctx.set(dut.tlb_request.ready, 1)
            edge = 0
            async for _, _, request, payload, answered in ctx.tick().sample(
                    dut.tlb_request.valid, Value.cast(dut.tlb_request.payload),
                    dut.tlb_response.valid & dut.tlb_response.ready):
                if answered:
                    pending.popleft()
                if request:
                    fields = LOOKUP.unpack(payload)
                    result.lookups.append((edge, fields))
                    status, ppn = self.tlb(fields["asid"], fields["va"], fields["key"])
                    # Taken at this edge: valid in the cycle after the next.
                    pending.append((edge + 1, codec(TlbResponse).pack(status=status, ppn=ppn)))
                due = bool(pending) and pending[0][0] <= edge
                ctx.set(dut.tlb_response.valid, due)
                ctx.set(Value.cast(dut.tlb_response.payload), pending[0][1] if due else 0)
                edge += 1

        async def os(ctx):
            for reject in self.answers:
                await stream_put(ctx, dut.miss_answer, MissAnswer.const({"reject": reject}))

        async def ring(ctx):
            events = [(edge, "head", endpoint, head)
                      for edge, endpoint, head in self.head_writes]
            events += [(edge, "reset", mask, None) for edge, mask in self.ring_resets]
            now = 0
            for edge, kind, what, value in sorted(events):
                if edge > now:
                    await ctx.tick().repeat(edge - now)
                    now = edge
                if kind == "head":
                    ctx.set(dut.ring_head[what], value)
                else:
                    ctx.set(dut.ring_reset, what)
                    await ctx.tick()
                    now += 1
                    ctx.set(dut.ring_reset, 0)

        sinks = [dut.rx_line, dut.rx_data, dut.fault, dut.completion]

        @background
        async def monitor(ctx):
            ready_rng = random.Random(self.rng.random())
            for sink in sinks:
                ctx.set(sink.ready, 1)
            counters = [getattr(dut, f"count_{name}") for name in RX_COUNTERS]
            offered = offering_line = False
            named = None
            completing = deque()    # edges at which lines are released
            edge = 0
            async for _, _, *values in ctx.tick().sample(
                    dut.flits.valid & dut.flits.ready, dut.flits.payload.last,
                    *[x for sink in sinks
                      for x in (sink.valid & sink.ready, Value.cast(sink.payload))],
                    dut.completion.valid, dut.rx_line.valid, dut.rx_next.valid,
                    dut.rx_next.addr, *counters, *dut.ring_tail):
                flit, last, line, line_bits, beat, beat_bits, fault, fault_bits, \
                    done, done_bits, done_valid, line_offered, hint_valid, hint = values[:14]
                if line_offered and not offering_line:
                    result.hints.append(named)
                offering_line = line_offered and not line
                named = hint if hint_valid else None
                if flit:
                    result.flit_edges.append(edge)
                    if last:
                        result.last_flits.append(edge)
                if line:
                    result.lines.append((edge, codec(RxLineRequest).unpack(line_bits)))
                if beat:
                    result.beats.append((edge, codec(RxFillBeat).unpack(beat_bits)))
                    if result.beats[-1][1]["last"]:
                        completing.append(max(edge + 1 + self.line_latency, self.lines_from,
                                              completing[-1] + 1 if completing else 0))
                if fault:
                    result.faults.append((edge, codec(NiFault).unpack(fault_bits)))
                if done_valid and not offered:
                    result.completion_offered.append(edge)
                offered = done_valid and not done
                if done:
                    result.completions.append((edge, codec(Completion).unpack(done_bits)))
                result.counters = dict(zip(RX_COUNTERS, values[14:14 + len(RX_COUNTERS)]))
                tails = list(values[14 + len(RX_COUNTERS):])
                if tails != result.tails:
                    result.tail_changes.append((edge, tails))
                result.tails = tails
                if self.ready_percent < 100:
                    for sink in sinks:
                        ctx.set(sink.ready, ready_rng.randrange(100) < self.ready_percent)
                if self.line_ready is not None:
                    ctx.set(dut.rx_line.ready, self.line_ready(edge + 1))
                due = bool(completing) and completing[0] <= edge + 1
                if due:
                    result.lines_done.append(completing.popleft())
                ctx.set(dut.lines_done, due)
                edge += 1

        run(dut, link, tlb, os, ring, monitor, deadline_cycles=cycles)
        return result


def expected_payload(msg):
    """``{physical word address: data}`` of ``msg``'s payload as it should land: in the frames
    of its endpoint's address space."""
    words = {}
    base = msg.remote_va & ~(FLIT_BYTES - 1)
    for index in range(len(msg.payload) // FLIT_BYTES):
        va = base + FLIT_BYTES * index
        pa = ppn_of(va, ASID + msg.dst_endpoint) << PAGE_BITS | va & (PAGE - 1)
        words[pa // FLIT_BYTES] = int.from_bytes(msg.payload[8 * index:8 * index + 8], "little")
    return words


def entry_pa(endpoint, slot):
    return RING_PA + 0x1000 * endpoint + COMPLETION_BYTES * slot


def read_entry(memory, endpoint, slot):
    """Decode the completion entry in ``slot`` of ``endpoint``'s ring from what was written."""
    first = entry_pa(endpoint, slot) // FLIT_BYTES
    bits = sum(memory[first + i] << (64 * i) for i in range(COMPLETION_WORDS))
    return codec(CompletionEntry).unpack(bits)


def check_delivered(result, msg, *, slot=0, last_flit=None, status=CompletionStatus.DELIVERED):
    """The payload (unless rejected) and then the entry are written; return the entry."""
    memory = result.memory()
    entry = read_entry(memory, msg.dst_endpoint, slot)
    assert entry["status"] == status
    assert entry["src_node"] == msg.src_node and entry["src_endpoint"] == msg.src_endpoint
    assert entry["length"] == len(msg.payload) and entry["seq"] == msg.seq
    assert entry["landing_va"] == msg.remote_va and entry["metadata"] == msg.metadata
    if last_flit is not None:
        assert entry["stamp"] == last_flit
    if status == CompletionStatus.DELIVERED:
        for address, data in expected_payload(msg).items():
            assert memory.get(address) == data, f"word at PA {8 * address:#x}"
    return entry


def test_8_byte_message_lands_with_its_entry_and_completion():
    msg = message(payload_bytes=8, remote_va=0x1000_0238)
    result = Bench().run([msg])
    fills = result.fills()
    pa = ppn_of(msg.remote_va, ASID) << PAGE_BITS | 0x238
    # One payload line (word 7 only), then the entry's partial line (slot 0: words 0-3 of the
    # line that holds RING_PA + 0 .. 31, which is words 0-3 of line RING_PA >> 6).
    assert [(addr, mask) for _, addr, mask, _ in fills] == [
        (pa >> 6, 1 << 7), (RING_PA >> 6, 0b1111 << ((RING_PA >> 3) & 7))]
    check_delivered(result, msg, last_flit=result.last_flits[0])
    assert [lookup for _, lookup in result.lookups] == [
        {"asid": ASID, "va": 0x1000_0000, "key": KEY}]
    assert [c for _, c in result.completions] == [{"endpoint": 0, "entry": RING_VA}]
    assert result.faults == []
    assert result.tails == [1, 0, 0, 0]
    assert result.counters == dict.fromkeys(RX_COUNTERS, 0) | {"delivered": 1}


def test_latency_from_last_flit_to_completion():
    """An 8-byte message whose page hits, everything ready, each line released in the cycle
    after its last word: the message's verdict is registered (in the packet queue), so the
    payload line is announced at the second edge after the trailer's transfer, and the
    completion is valid from the 7th edge after it (the edge the entry's line is released at),
    so a ready Notifier takes it at the 8th (a MessageBuffer that releases the entry's line in
    the cycle of its last word, as ours does when the coherence answer is in, saves a cycle)."""
    result = Bench().run([message(payload_bytes=8)])
    last = result.last_flits[0]
    # Edges at which a transfer can happen: the first one that saw the completion valid.
    first_line = result.lines[0][0] - last
    taken = result.completions[0][0] - last
    assert result.completion_offered[0] == result.completions[0][0]
    print(f"trailer taken at edge L; payload line taken at L+{first_line}; completion valid "
          f"from L+{taken - 1}, taken at L+{taken}")
    assert first_line == 2
    assert taken == 8


def test_tail_and_completion_wait_for_the_message_buffer_to_release_the_lines():
    """The MessageBuffer releases no line before edge 80, long after the entries' last words:
    the writer goes on with the second message meanwhile, and the tails, the delivered count and
    the completion wait for the lines. The completion is valid at the edge its entry's line is
    released at, and the tail advances at the edge after (its new value seen from the one after
    that); the second message, written to the same ring while the first's entry waited, has its
    entry in the next slot, and its tail advances likewise after its own entry's line."""
    release = 80
    first = message(payload_bytes=64, seq=1)
    second = message(payload_bytes=8, seq=2, notify=False, remote_va=0x1000_0100)
    result = Bench(lines_from=release).run([first, second])
    entry_words = [edge for edge, beat in result.beats if beat["last"]]
    assert len(entry_words) == 4 and entry_words[-1] < release - 20
    assert result.lines_done == list(range(release, release + 4))
    assert result.completion_offered == [release + 1]
    assert [c for _, c in result.completions] == [{"endpoint": 0, "entry": RING_VA}]
    assert result.tail_changes[1:] == [(release + 3, [1, 0, 0, 0]), (release + 5, [2, 0, 0, 0])]
    check_delivered(result, first, slot=0)
    check_delivered(result, second, slot=1)
    assert result.counters["delivered"] == 2


def test_2_kib_message():
    msg = message(payload_bytes=MAX_PAYLOAD_BYTES, remote_va=0x2000_0000)
    result = Bench().run([msg])
    fills = result.fills()
    assert len(fills) == MAX_PAYLOAD_BYTES // LINE_BYTES + 1
    assert all(mask == 0xff for _, _, mask, _ in fills[:-1])
    check_delivered(result, msg, last_flit=result.last_flits[0])
    assert len(result.memory()) == MAX_PAYLOAD_BYTES // FLIT_BYTES + COMPLETION_WORDS
    # Payload words go out one per cycle, announcements ahead of them.
    edges = [edge for edge, _ in result.beats]
    assert edges == list(range(edges[0], edges[0] + len(edges)))
    print(f"2 KiB: last flit -> completion taken {result.completions[0][0] - result.last_flits[0]}"
          f" cycles")


def test_unaligned_payload_crossing_a_page():
    """Three words at the end of one page, then five on the next: two lookups, each page to its
    own frame, and the lines split where the pages and lines do."""
    msg = message(payload_bytes=64, remote_va=0x3000_0fe8, notify=False)
    result = Bench().run([msg])
    assert [lookup["va"] for _, lookup in result.lookups] == [0x3000_0000, 0x3000_1000]
    fills = result.fills()
    assert [mask for _, _, mask, _ in fills] == [0b1110_0000, 0b0001_1111, 0b1111]
    assert fills[0][1] == (ppn_of(0x3000_0000, ASID) << PAGE_BITS | 0xfc0) >> 6
    assert fills[1][1] == ppn_of(0x3000_1000, ASID) << PAGE_BITS >> 6
    check_delivered(result, msg)
    assert result.completions == []     # notify off


def test_payload_ending_at_its_page_end_looks_up_that_page_only():
    """A payload whose last byte is its page's last: one lookup, so that the next page, not
    mapped in this address space, is never asked for and the message lands."""
    msg = message(payload_bytes=24, remote_va=0x3000_0fe8, notify=False)

    def tlb(asid, va, key):
        return (TlbStatus.MISS, 0) if va == 0x3000_1000 else hit(asid, va, key)
    result = Bench(tlb=tlb).run([msg])
    assert [lookup["va"] for _, lookup in result.lookups] == [0x3000_0000]
    assert result.fault_kinds() == []
    check_delivered(result, msg)


def test_each_endpoint_translates_in_its_own_address_space():
    """The same VA in messages for three endpoints (three processes): each message is looked up
    in its endpoint's ASID and lands in that address space's frames, and in no other's."""
    msgs = [message(payload_bytes=24, remote_va=0x1000_0ff0, dst_endpoint=endpoint, seq=endpoint,
                    rng=random.Random(endpoint)) for endpoint in (1, 0, 3)]
    result = Bench().run(msgs)
    assert [(lookup["asid"], lookup["va"]) for _, lookup in result.lookups] == [
        (ASID + msg.dst_endpoint, va) for msg in msgs for va in (0x1000_0000, 0x1000_1000)]
    for msg in msgs:
        check_delivered(result, msg)
    expected = {address: data for msg in msgs for address, data in expected_payload(msg).items()}
    assert len(expected) == 3 * 3, "the three messages' frames overlap"
    memory = result.memory()
    assert {k: v for k, v in memory.items() if k in expected} == expected
    assert len(memory) == len(expected) + len(msgs) * COMPLETION_WORDS
    assert result.fault_kinds() == []


FAULT_CASES = {
    "bad CRC": (lambda: raw_flits(length=16, words=2, bad_crc=True), NiFaultKind.BAD_CRC),
    "last early": (lambda: raw_flits(length=64, words=2), NiFaultKind.TRUNCATED),
    "last early, bad CRC": (lambda: raw_flits(length=64, words=8, last_at=5, bad_crc=True),
                            NiFaultKind.BAD_CRC),
    "no last where expected": (lambda: raw_flits(length=8, words=3), NiFaultKind.TRUNCATED),
    "lone last flit": (lambda: [(0, True)], NiFaultKind.TRUNCATED),
    "too long": (lambda: raw_flits(length=MAX_PAYLOAD_BYTES + 8,
                                   words=MAX_PAYLOAD_BYTES // 8 + 1), NiFaultKind.BAD_HEADER),
    "length not whole words": (lambda: raw_flits(length=12, words=1), NiFaultKind.BAD_HEADER),
    "wrong node": (lambda: raw_flits(length=8, words=1, dst_node=NODE + 1),
                   NiFaultKind.BAD_HEADER),
    "not a PUT": (lambda: raw_flits(length=8, words=1, kind=3), NiFaultKind.BAD_HEADER),
    "endpoint the NI does not have": (lambda: raw_flits(length=8, words=1,
                                                        dst_endpoint=ENDPOINTS),
                                      NiFaultKind.BAD_ENDPOINT),
    "disabled endpoint": (lambda: raw_flits(length=8, words=1, dst_endpoint=2),
                          NiFaultKind.BAD_ENDPOINT),
}


@pytest.mark.parametrize("case", FAULT_CASES)
def test_bad_message_is_discarded_and_the_next_delivered(case):
    flits, kind = FAULT_CASES[case]
    entries = [endpoint_entry(i, enabled=i != 2) for i in range(ENDPOINTS)]
    good = message(payload_bytes=16)
    result = Bench(entries=entries).run([flits(), good])
    assert result.fault_kinds() == [kind]
    fault = result.faults[0][1]
    if case != "lone last flit":     # (which has no header)
        assert fault["node"] == 3
    assert fault["va"] == 0
    if fault["endpoint"] < ENDPOINTS:
        assert fault["asid"] == ASID + fault["endpoint"]
    # Only the good message is written, in slot 0.
    check_delivered(result, good, slot=0, last_flit=result.last_flits[1])
    assert len(result.fills()) == 2 and len(result.completions) == 1
    counter = {NiFaultKind.BAD_CRC: "bad_crc", NiFaultKind.TRUNCATED: "truncated",
               NiFaultKind.BAD_HEADER: "bad_header", NiFaultKind.BAD_ENDPOINT: "bad_endpoint"}
    assert result.counters == dict.fromkeys(RX_COUNTERS, 0) | {"delivered": 1, counter[kind]: 1}


@pytest.mark.parametrize("status, kind, counter", [
    (TlbStatus.KEY_FAULT, NiFaultKind.RX_KEY, "key_faults"),
    (TlbStatus.PERMISSION_FAULT, NiFaultKind.RX_PERMISSION, "permission_faults"),
])
def test_protection_fault_discards(status, kind, counter):
    """A refused second page discards the whole message: nothing of the first page is written."""
    def tlb(asid, va, key):
        return (status, 0) if va == 0x5000_1000 else hit(asid, va, key)
    bad = message(payload_bytes=32, remote_va=0x5000_0ff0, dst_endpoint=1)
    good = message(payload_bytes=8, remote_va=0x5000_0000, dst_endpoint=1)
    result = Bench(tlb=tlb).run([bad, good])
    assert [(f["kind"], f["va"], f["endpoint"], f["asid"], f["node"])
            for _, f in result.faults] == [(kind, 0x5000_1000, 1, ASID + 1, 3)]
    check_delivered(result, good, slot=0)
    assert len(result.fills()) == 2
    assert result.tails == [0, 1, 0, 0]
    assert result.counters == dict.fromkeys(RX_COUNTERS, 0) | {"delivered": 1, counter: 1}


def test_first_page_refused_decides_over_a_miss_on_the_second():
    """Pages are judged in order: a permission fault on the first page discards the message,
    and the second page's miss is never reported."""
    def tlb(asid, va, key):
        return (TlbStatus.PERMISSION_FAULT, 0) if va == 0x5000_0000 else (TlbStatus.MISS, 0)
    bad = message(payload_bytes=32, remote_va=0x5000_0ff0)
    result = Bench(tlb=tlb).run([bad])
    assert [(f["kind"], f["va"]) for _, f in result.faults] == [
        (NiFaultKind.RX_PERMISSION, 0x5000_0000)]
    assert result.lines == [] and result.completions == []
    assert result.counters == dict.fromkeys(RX_COUNTERS, 0) | {"permission_faults": 1}


def missing(**misses):
    """A TLB on which page ``va`` misses the first ``misses[hex(va)]`` lookups (default: 1)."""
    left = {}

    def tlb(asid, va, key):
        left.setdefault(va, misses.get(hex(va), 1))
        if left[va]:
            left[va] -= 1
            return TlbStatus.MISS, 0
        return hit(asid, va, key)
    return tlb


def test_miss_retry_delivers():
    msg = message(payload_bytes=24, remote_va=0x6000_0010)
    result = Bench(tlb=missing(), answers=[False]).run([msg])
    assert [(f["kind"], f["va"]) for _, f in result.faults] == [(NiFaultKind.RX_MISS, 0x6000_0000)]
    assert [lookup["va"] for _, lookup in result.lookups] == [0x6000_0000] * 2
    check_delivered(result, msg)
    assert result.counters == dict.fromkeys(RX_COUNTERS, 0) | {"delivered": 1, "misses": 1}


def test_miss_on_each_page_retried_until_both_hit():
    """The first page misses once, the second twice: one miss reported per round, each for the
    first page (in order) that missed; every round looks both pages up again."""
    msg = message(payload_bytes=16, remote_va=0x6000_0ff8)
    result = Bench(tlb=missing(**{hex(0x6000_1000): 2}), answers=[False, False]).run([msg])
    assert [(f["kind"], f["va"]) for _, f in result.faults] == [
        (NiFaultKind.RX_MISS, 0x6000_0000), (NiFaultKind.RX_MISS, 0x6000_1000)]
    assert len(result.lookups) == 6
    check_delivered(result, msg)
    assert result.counters["misses"] == 2


def test_miss_rejected_writes_a_rejected_entry_only():
    msg = message(payload_bytes=64, remote_va=0x7000_0000, dst_endpoint=3)
    after = message(payload_bytes=8, remote_va=0x7100_0000, dst_endpoint=3)

    def tlb(asid, va, key):
        return (TlbStatus.MISS, 0) if va == 0x7000_0000 else hit(asid, va, key)
    result = Bench(tlb=tlb, answers=[True]).run([msg, after])
    assert [(f["kind"], f["va"], f["endpoint"]) for _, f in result.faults] == [
        (NiFaultKind.RX_MISS, 0x7000_0000, 3), (NiFaultKind.RX_REJECTED, 0x7000_0000, 3)]
    fills = result.fills()
    assert fills[0][1] == entry_pa(3, 0) >> 6 and len(fills) == 3  # entry, then `after`'s two
    check_delivered(result, msg, slot=0, status=CompletionStatus.REJECTED,
                    last_flit=result.last_flits[0])
    check_delivered(result, after, slot=1)
    assert [c["entry"] for _, c in result.completions] == [RING_VA + 0x3000,
                                                           RING_VA + 0x3000 + COMPLETION_BYTES]
    assert result.counters == dict.fromkeys(RX_COUNTERS, 0) | {
        "delivered": 1, "rejected": 1, "misses": 1}


def test_full_ring_holds_the_message_until_the_head_moves():
    """A ring of 2: two messages fill it, the third waits (nothing written) until user code
    consumes an entry; the fourth, for another endpoint, comes in meanwhile but is written after
    the third."""
    entries = [endpoint_entry(i, ring_log2=1) for i in range(ENDPOINTS)]
    msgs = [message(payload_bytes=8, remote_va=0x1000_0000 + 8 * i, seq=i) for i in range(3)]
    msgs.append(message(payload_bytes=8, dst_endpoint=1, seq=3))
    release = 300
    result = Bench(entries=entries, head_writes=[(release, 0, 1)]).run(msgs, cycles=600)
    third_last = result.last_flits[2]
    assert third_last < release - 100
    # Lines of the first two messages (payload, entry each), then nothing until the release.
    assert [edge < release for edge, _ in result.lines] == [True] * 4 + [False] * 4
    # The fourth message came in while the third waited, and completed after it.
    assert result.flit_edges[-1] < release
    assert [c["endpoint"] for _, c in result.completions] == [0, 0, 0, 1]
    # Counted from when the writer came to the third (as it became a job, while the second's
    # entry's words went out) until the third cycle after the release (the writer's ring check
    # of a job it holds sees the head three cycles late).
    held = result.counters["ring_full_cycles"]
    second_written = [edge for edge, beat in result.beats if beat["last"]][3]
    assert third_last <= second_written
    assert release - second_written - 1 <= held <= release - second_written + 4
    memory = result.memory()
    # The second is in slot 1; the third went into slot 0 again, over the first, after the head
    # moved.
    assert read_entry(memory, 0, 1)["seq"] == 1
    assert read_entry(memory, 0, 0)["seq"] == 2
    assert read_entry(memory, 0, 0)["stamp"] == third_last
    assert result.counters["delivered"] == 4 and result.tails == [3, 1, 0, 0]


def test_a_ring_is_full_of_entries_written_whose_lines_are_not_released():
    """A ring of 2 whose lines the MessageBuffer releases only from edge 150: two messages'
    entries fill it before either tail advances, and the third waits for the head to move (at
    edge 300), then goes into slot 0 again."""
    entries = [endpoint_entry(i, ring_log2=1) for i in range(ENDPOINTS)]
    msgs = [message(payload_bytes=8, remote_va=0x1000_0000 + 8 * i, seq=i) for i in range(3)]
    result = Bench(entries=entries, lines_from=150, head_writes=[(300, 0, 1)]).run(msgs,
                                                                                 cycles=600)
    assert [edge < 150 for edge, _ in result.lines] == [True] * 4 + [False] * 2
    assert result.lines[4][0] > 300
    memory = result.memory()
    assert read_entry(memory, 0, 1)["seq"] == 1 and read_entry(memory, 0, 0)["seq"] == 2
    assert result.tails == [3, 0, 0, 0] and result.counters["delivered"] == 3


def test_ring_reset_restarts_the_tail():
    msgs = [message(payload_bytes=8, seq=i) for i in range(3)]
    reset = 100
    result = Bench(ring_resets=[(reset, 0b0001)], gap_cycles=60).run(msgs, cycles=400)
    assert result.completions[1][0] < reset < result.flit_edges[10]
    assert result.counters["delivered"] == 3
    # Slots 0, 1, then (after the reset) 0 again.
    assert [c["entry"] for _, c in result.completions] == [
        RING_VA, RING_VA + COMPLETION_BYTES, RING_VA]
    assert result.tails == [1, 0, 0, 0]


def payload_beat_edges(result):
    """Return the edges at which the writer sent payload words (not completion entry words), in
    order: each is a staging RAM word given back."""
    entry_lines = {entry_pa(endpoint, slot) >> 6 for endpoint in range(ENDPOINTS)
                   for slot in range(16)}
    return [edge for _, addr, _, words in result.fills() if addr not in entry_lines
            for edge, _, _ in words]


def test_back_to_back_messages_stream_at_one_flit_per_cycle(seed):
    """Messages offered without gaps: every flit of a message is taken on consecutive edges, and
    every message lands. The one wait allowed is the documented one: a payload's first flit waits
    while the staging RAM (two largest payloads) has no room for it, and goes in the cycle after
    the writer sends the word of the payloads before it that makes room (seeds 8, 392774305 and
    496918391 give one: 2 KiB behind 2 KiB and 8 bytes waits 4 cycles for the writer)."""
    rng = random.Random(seed)
    msgs = [message(payload_bytes=8 * rng.choice([0, 1, 2, 9, 64, 256]),
                    remote_va=0x1000_0000 + 0x10000 * i + 8 * rng.randrange(512),
                    dst_endpoint=rng.choice([0, 1, 3]), seq=i, rng=rng) for i in range(8)]
    result = Bench().run(msgs)
    assert result.counters["delivered"] == len(msgs), f"seed {seed}"
    given_back = payload_beat_edges(result)
    start = staged = 0
    for msg in msgs:
        edges = result.flit_edges[start:start + len(msg.flits())]
        waits = {index: edges[index] - edges[index - 1] - 1 for index in range(1, len(edges))
                 if edges[index] != edges[index - 1] + 1}
        words = len(msg.payload) // FLIT_BYTES
        # Words of the payloads before it the writer must have sent for this one to fit.
        short = staged + words - 2 * STAGING_WORDS
        assert set(waits) <= ({HEADER_FLITS} if short > 0 else set()), \
            f"seed {seed}: message {len(msg.flits())} flits long waited {waits} (flit: cycles)"
        if waits:
            room = given_back[short - 1]
            assert edges[HEADER_FLITS] == room + 1, \
                f"seed {seed}: first payload flit at {edges[HEADER_FLITS]}, room at {room}"
        start += len(msg.flits())
        staged += words
    slots = [0] * ENDPOINTS
    for msg in msgs:
        check_delivered(result, msg, slot=slots[msg.dst_endpoint])
        slots[msg.dst_endpoint] += 1
    flits = sum(len(msg.flits()) for msg in msgs)
    busy = result.completions[-1][0] - result.flit_edges[0] + 1
    print(f"seed {seed}: {flits} flits in {busy} cycles: {flits / busy:.2f} flits per cycle")
    check_hints(result, msgs)


def test_back_to_back_8_byte_messages_while_their_lines_are_released_late():
    """40 messages of 8 bytes without gaps, each line released 12 cycles after its last word
    (a coherence round trip): the writer goes on with the next messages meanwhile, so a message
    comes in every 5 cycles, from the first on (its 5 flits; the writer's 5 words, the next
    message's lines announced while they go out), and every message lands with its completion,
    in order."""
    msgs = [message(payload_bytes=8, remote_va=0x1000_0000 + 0x40 * i, seq=i, notify=bool(i % 2))
            for i in range(40)]
    entries = [endpoint_entry(i, ring_log2=6) for i in range(ENDPOINTS)]
    result = Bench(line_latency=12, entries=entries).run(msgs)
    flits = len(msgs[0].flits())
    starts = result.flit_edges[::flits]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert all(result.flit_edges[start + index] == result.flit_edges[start] + index
               for start in range(0, len(result.flit_edges), flits) for index in range(flits))
    assert set(gaps) == {5}, gaps
    print(f"{flits * len(gaps)} flits in {sum(gaps)} cycles: "
          f"{flits * len(gaps) / sum(gaps):.2f} of the link rate")
    for slot, msg in enumerate(msgs):
        check_delivered(result, msg, slot=slot)
    assert [c["entry"] for _, c in result.completions] == [
        RING_VA + COMPLETION_BYTES * slot for slot in range(1, 40, 2)]
    check_hints(result, msgs)


def check_hints(result, msgs):
    """``rx_next`` named every announcement ahead, and rightly, but for the entry lines of
    messages with no payload (it names no entry's line ahead of its job)."""
    misses, named = result.hint_misses()
    assert misses == []
    assert named == len(result.lines) - sum(len(msg.payload) == 0 for msg in msgs)


def check_all_delivered(result, msgs):
    """Every message of ``msgs`` landed, each in the next slot of its endpoint's ring, and the
    completions came in arrival order."""
    slots = Counter()
    for msg in msgs:
        check_delivered(result, msg, slot=slots[msg.dst_endpoint])
        slots[msg.dst_endpoint] += 1
    assert [(c["endpoint"], c["entry"]) for _, c in result.completions] == [
        (msg.dst_endpoint, RING_VA + 0x1000 * msg.dst_endpoint
         + COMPLETION_BYTES * sum(m.dst_endpoint == msg.dst_endpoint for m in msgs[:index]))
        for index, msg in enumerate(msgs)]


THROUGHPUT_MIXES = {
    "4 x 2 KiB": [MAX_PAYLOAD_BYTES] * 4,
    "mixed sizes": [2048, 8, 1024, 64, 2048, 512, 0, 1536, 256, 2048, 136, 640],
}


@pytest.mark.parametrize("mix", THROUGHPUT_MIXES)
def test_back_to_back_messages_arrive_at_link_rate(mix):
    """Messages offered without gaps, the MessageBuffer always ready: the next message streams
    in while one is written, so that the link runs at >= 95 % of a flit per cycle (DESIGN
    section 8) from the first flit to the last; and the writer keeps up: from the first
    completion to the last, the flits of the messages after the first went out as fast."""
    msgs = [message(payload_bytes=size, remote_va=0x1000_0000 + 0x10000 * i + 8 * (i % 5),
                    dst_endpoint=i % 3, seq=i) for i, size in enumerate(THROUGHPUT_MIXES[mix])]
    result = Bench().run(msgs)
    check_all_delivered(result, msgs)
    flits = sum(len(msg.flits()) for msg in msgs)
    cycles = result.flit_edges[-1] - result.flit_edges[0] + 1
    written = sum(len(msg.flits()) for msg in msgs[1:])
    writing = result.completions[-1][0] - result.completions[0][0]
    print(f"{mix}: {flits} flits in {cycles} cycles: {flits / cycles:.3f} flits per cycle; "
          f"written at {written / writing:.3f}")
    assert flits / cycles >= 0.95
    assert written / writing >= 0.95
    check_hints(result, msgs)


@pytest.mark.parametrize("size", [MAX_PAYLOAD_BYTES, 8])
def test_ring_full_hold_stops_the_link_once_the_buffers_are_full(size):
    """Endpoint 0's ring is full when message 1 comes: the writer holds it, reception goes on
    until the staging RAM (2 KiB messages: message 2 in, message 3 held at its first payload
    flit) or the job queue (8-byte messages) is full, then holds the link; once the head moves,
    message 1 is written before anything of the messages behind it."""
    entries = [endpoint_entry(i, ring_log2=0 if i == 0 else 4) for i in range(ENDPOINTS)]
    count = 4 if size == MAX_PAYLOAD_BYTES else 2 + QUEUED_JOBS + 2
    msgs = [message(payload_bytes=size, remote_va=0x2000_0000 + 0x10000 * i, seq=i,
                    dst_endpoint=min(i, 1)) for i in range(count)]
    release = 700
    # Ring 0 of one entry: full with tail 0 and head 0xffff, until the head comes back to 0.
    heads = [(0, 0, 0xffff), (release, 0, 0)]
    result = Bench(entries=entries, head_writes=heads).run(msgs, cycles=release + 300 * count)
    flits = len(msgs[0].flits())
    taken = sum(edge < release for edge in result.flit_edges)
    if size == MAX_PAYLOAD_BYTES:
        assert taken == 2 * flits + HEADER_FLITS
    else:
        # One held by the writer, one in the queue's register for the oldest job, QUEUED_JOBS
        # behind it, one waiting at its trailer for room in the queue.
        assert taken == (1 + QUEUED_JOBS + 1 + 1) * flits
    # Taken back to back from the start, then nothing until the release.
    assert result.flit_edges[:taken] == list(range(taken))
    assert result.lines and result.lines[0][0] > release
    # Message 1's lines (payload and entry) all come first; every message lands.
    first = -(-size // LINE_BYTES) + 1
    lines_of_1 = {entry_pa(0, 0) >> 6} | {word >> 3 for word in expected_payload(msgs[0])}
    assert all(line["addr"] in lines_of_1 for _, line in result.lines[:first])
    assert not any(line["addr"] in lines_of_1 for _, line in result.lines[first:])
    check_all_delivered(result, msgs)
    assert result.counters["ring_full_cycles"] >= release - result.last_flits[0] - 1


BAD_DURING_WRITE = {
    "bad CRC": (lambda: raw_flits(length=512, words=64, bad_crc=True), NiFaultKind.BAD_CRC),
    # 300 words behind a header that asks for one: none may land on the staging RAM's words of
    # the messages before it, which wrap around it.
    "more words than its header says": (lambda: raw_flits(length=8, words=300),
                                        NiFaultKind.TRUNCATED),
    "permission fault": (lambda: message(payload_bytes=512, remote_va=0x6600_0000).flits(),
                         NiFaultKind.RX_PERMISSION),
}


@pytest.mark.parametrize("held", [False, True], ids=["written", "held"])
@pytest.mark.parametrize("case", BAD_DURING_WRITE)
def test_bad_message_while_one_is_written_leaves_memory_untouched(case, held):
    """A bad message comes in while a 2 KiB one is being written (or held for ring space, so
    that its words wait in the staging RAM) and a 512-byte one waits behind it: nothing of the
    bad one is written, and the good messages before and after it land whole."""
    flits, kind = BAD_DURING_WRITE[case]

    def tlb(asid, va, key):
        return (TlbStatus.PERMISSION_FAULT, 0) if va >> 24 == 0x66 else hit(asid, va, key)
    release = 700
    heads = [(0, 0, 0xffff), (release, 0, 0)] if held else []
    entries = [endpoint_entry(i, ring_log2=0 if i == 0 else 4) for i in range(ENDPOINTS)]
    good = [message(payload_bytes=MAX_PAYLOAD_BYTES, remote_va=0x2000_0000, seq=1),
            message(payload_bytes=512, remote_va=0x2800_0000, seq=2, dst_endpoint=1),
            message(payload_bytes=MAX_PAYLOAD_BYTES, remote_va=0x3000_0000, seq=3,
                    dst_endpoint=1)]
    result = Bench(tlb=tlb, entries=entries, head_writes=heads).run(
        [*good[:2], flits(), good[2]], cycles=release + 1200)
    assert result.fault_kinds() == [kind]
    bad_first = result.flit_edges[len(good[0].flits()) + len(good[1].flits())]
    if held:
        assert bad_first < release < result.lines[0][0]
    else:
        assert result.lines[0][0] <= bad_first < result.completions[0][0]
    check_all_delivered(result, good)
    expected = {address: data for msg in good for address, data in expected_payload(msg).items()}
    memory = result.memory()
    assert {k: v for k, v in memory.items() if k in expected} == expected
    assert len(memory) == len(expected) + len(good) * COMPLETION_WORDS


def test_words_past_a_largest_payload_do_not_wrap_onto_the_message_held_before_it():
    """A 2 KiB message held for ring space keeps half the staging RAM; the next message's header
    asks for 2 KiB, the other half exactly, but a word more comes: that word, which would wrap
    onto the held message's first word, is not kept, and the held message lands whole."""
    release = 700
    entries = [endpoint_entry(i, ring_log2=0 if i == 0 else 4) for i in range(ENDPOINTS)]
    held = message(payload_bytes=MAX_PAYLOAD_BYTES, remote_va=0x2000_0000, seq=1)
    too_long = raw_flits(length=MAX_PAYLOAD_BYTES, words=MAX_PAYLOAD_BYTES // FLIT_BYTES + 1,
                         dst_endpoint=1)
    result = Bench(entries=entries, head_writes=[(0, 0, 0xffff), (release, 0, 0)]).run(
        [held, too_long], cycles=release + 800)
    assert result.last_flits[1] < release < result.lines[0][0]
    assert result.fault_kinds() == [NiFaultKind.TRUNCATED]
    check_all_delivered(result, [held])
    assert len(result.memory()) == len(expected_payload(held)) + COMPLETION_WORDS


def test_a_rejected_message_keeps_no_staging_words():
    """Behind a 2 KiB message held for ring space, a message whose page the OS rejects, then
    another 2 KiB one: the rejected message keeps none of the staging RAM, so the second 2 KiB
    message fits in the other half and comes in whole while the first is still held."""
    release = 900
    entries = [endpoint_entry(i, ring_log2=0 if i == 0 else 4) for i in range(ENDPOINTS)]
    msgs = [message(payload_bytes=MAX_PAYLOAD_BYTES, remote_va=0x2000_0000, seq=1),
            message(payload_bytes=8, remote_va=0x7000_0000, seq=2, dst_endpoint=1),
            message(payload_bytes=MAX_PAYLOAD_BYTES, remote_va=0x3000_0000, seq=3,
                    dst_endpoint=1)]

    def tlb(asid, va, key):
        return (TlbStatus.MISS, 0) if va == 0x7000_0000 else hit(asid, va, key)
    result = Bench(tlb=tlb, answers=[True], entries=entries,
                   head_writes=[(0, 0, 0xffff), (release, 0, 0)]).run(msgs, cycles=release + 1200)
    assert result.last_flits[2] < release < result.lines[0][0]
    check_delivered(result, msgs[0])
    check_delivered(result, msgs[1], status=CompletionStatus.REJECTED)
    check_delivered(result, msgs[2], slot=1)
    assert result.counters["rejected"] == 1 and result.counters["delivered"] == 2


def test_sixteen_endpoints_each_take_their_messages():
    """With the most endpoints (every endpoint number names one), messages to the first and the
    last land, each in its own address space."""
    endpoints = 1 << ENDPOINT_BITS

    def tlb(asid, va, key):
        return TlbStatus.HIT, ppn_of(va, asid)
    msgs = [message(payload_bytes=16, remote_va=0x1000_0100, dst_endpoint=endpoint, seq=endpoint)
            for endpoint in (endpoints - 1, 0)]
    result = Bench(endpoints=endpoints, tlb=tlb).run(msgs)
    assert result.fault_kinds() == []
    check_all_delivered(result, msgs)
    assert result.tails == [1] + [0] * (endpoints - 2) + [1]


def test_a_lines_words_wait_for_its_announcement():
    """The MessageBuffer takes a line announcement only every 20 cycles while it takes words at
    once: the writer sends no line's words before that line's announcement is taken (checked by
    ``Result.fills``), and the message lands whole."""
    msg = message(payload_bytes=512, remote_va=0x2000_0000)
    result = Bench(line_ready=lambda edge: edge % 20 == 0).run([msg], cycles=1000)
    assert len(result.fills()) == 512 // LINE_BYTES + 1
    check_delivered(result, msg)


def test_backpressure_everywhere_loses_nothing(seed):
    """Sinks ready at random: the same lines, entries and faults as with everything ready."""
    rng = random.Random(seed)
    msgs = [message(payload_bytes=8 * rng.randrange(40), remote_va=0x1000_0ff0 + 0x10000 * i,
                    seq=i, rng=rng) for i in range(5)]
    flits = [m.flits() for m in msgs]
    flits.insert(2, raw_flits(length=16, words=2, bad_crc=True))
    ready = Bench(rng=random.Random(seed)).run(flits)
    slow = Bench(ready_percent=50, rng=random.Random(seed)).run(flits, cycles=4000)
    assert slow.memory() == ready.memory() or _same_but_stamps(slow, ready), f"seed {seed}"
    assert slow.fault_kinds() == ready.fault_kinds() == [NiFaultKind.BAD_CRC], f"seed {seed}"
    assert [c for _, c in slow.completions] == [c for _, c in ready.completions]
    for slot, msg in enumerate(msgs):
        check_delivered(slow, msg, slot=slot)


def _same_but_stamps(a, b):
    """Whether two runs wrote the same words but for the entries' stamps (the slow run's
    trailers come later)."""
    stamps = {entry_pa(0, slot) // FLIT_BYTES + 3 for slot in range(16)}
    strip = lambda memory: {k: v for k, v in memory.items() if k not in stamps}
    return strip(a.memory()) == strip(b.memory())


def test_message_with_no_payload_writes_only_its_entry():
    msg = message(payload_bytes=0)
    result = Bench().run([msg])
    assert result.lookups == []
    fills = result.fills()
    assert len(fills) == 1 and fills[0][1] == RING_PA >> 6
    check_delivered(result, msg)


@pytest.mark.parametrize("params, error", [
    (dict(node=16), ValueError), (dict(node=-1), ValueError), (dict(node="1"), TypeError),
    (dict(endpoints=0), ValueError), (dict(endpoints=17), ValueError),
    (dict(endpoints=True), TypeError), (dict(asid_bits=0), ValueError),
    (dict(asid_bits=17), ValueError),
])
def test_parameter_errors_name_the_parameter(params, error):
    name, value = next(iter(params.items()))
    with pytest.raises(error, match=name):
        RxEngine(**params)


def test_parameters_are_kept():
    engine = RxEngine(node=5, endpoints=3, asid_bits=12)
    assert (engine.node, engine.endpoint_count, engine.asid_bits) == (5, 3, 12)
    assert len(engine.ring_tail) == 3 and len(engine.tlb_request.payload.asid) == 12
    # The tail as user code reads it: a 16-bit count of entries written, wrapping.
    assert all(len(tail) == 16 for tail in engine.ring_tail)
    silence_unused(engine)


def test_node_number_comes_in_on_a_strap_port_when_not_built_in_and_defaults():
    strapped, built_in, default = RxEngine(node=None), RxEngine(node=5), RxEngine()
    assert strapped.signature.members["node_id"].shape == NODE_BITS
    assert "node_id" not in built_in.signature.members
    assert (default.node, default.endpoint_count, default.asid_bits) == (0, 8, 8)
    # Both build: the header check takes the node number from the strap or the constant.
    Fragment.get(strapped, None)
    Fragment.get(built_in, None)
    silence_unused(default)
    with pytest.raises(ValueError, match="^node must be between 0 and 15, not 16$"):
        RxEngine(node=16)
