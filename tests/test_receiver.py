"""Unit tests of the RX engine's receiver (rtl/receiver.py) in the Amaranth simulator: messages
from behavioral/message.py in, a fake translator that answers each request two cycles after it,
and a packet queue that takes every payload word and message (after ``queue_wait`` cycles)."""

import pytest
from amaranth.hdl import Value

from rtl.layouts import (NODE_BITS, PAGE_BITS, Flit, NiFault, NiFaultKind, RxJob, RxStagedWord,
                         TlbStatus, codec, rx_lookup_layout)
from rtl.params import silence_unused
from rtl.receiver import STATES, MessageReceiver
from tests.sim import background, edges, fsm_states, run, stream_put, tracer, transfer
from tests.test_rxengine import ASID, ENDPOINTS, KEY, NODE, endpoint_entry, message, raw_flits


class Bench:
    """The receiver with a fake translator (every page answered ``status(va)``, HIT unless said,
    frame ``va >> 12``, ``latency`` cycles after the request), a queue that is ready for a message
    ``queue_wait`` cycles after it is first offered and for payload words from edge
    ``room_from`` on, and an OS whose ``answers`` to misses are in order (True: reject)."""

    def __init__(self, *, status=None, queue_wait=0, room_from=0, answers=(), latency=2):
        self.dut = MessageReceiver(node=NODE, endpoints=ENDPOINTS)
        self.latency = latency
        self.status = status or (lambda va: TlbStatus.HIT)
        self.queue_wait, self.room_from, self.answers = queue_wait, room_from, list(answers)
        self.log = []

    @background
    async def translator(self, ctx):
        dut = self.dut
        due, answer = None, None
        ctx.set(dut.translate.ready, 1)
        edge = 0
        async for _, _, asked, payload in ctx.tick().sample(transfer(dut.translate),
                                                          Value.cast(dut.translate.payload)):
            edge += 1
            if asked:
                va = codec(rx_lookup_layout(8)).unpack(payload)["va"]
                due, answer = edge + self.latency, (self.status(va), va >> PAGE_BITS)
                ctx.set(dut.translation.done, 0)
                ctx.set(dut.translate.ready, 0)
            if due is not None and edge >= due:
                ctx.set(dut.translation.done, 1)
                ctx.set(dut.translation.status, answer[0])
                ctx.set(dut.translation.va, answer[1] << PAGE_BITS)
                ctx.set(dut.translation.ppn[0], answer[1])
                ctx.set(dut.translate.ready, 1)
                due = None

    @background
    async def queue(self, ctx):
        dut = self.dut
        waited, edge = 0, 0
        ctx.set(dut.message.ready, self.queue_wait == 0)
        ctx.set(dut.staging.ready, self.room_from == 0)
        async for _, _, offered, taken in ctx.tick().sample(dut.message.valid,
                                                          transfer(dut.message)):
            edge += 1
            waited = 0 if taken or not offered else waited + 1
            ctx.set(dut.message.ready, waited >= self.queue_wait)
            ctx.set(dut.staging.ready, edge >= self.room_from)

    @background
    async def os(self, ctx):
        dut = self.dut
        ctx.set(dut.fault.ready, 1)
        while True:
            _, _, fault, payload = await ctx.tick().sample(transfer(dut.fault),
                                                           Value.cast(dut.fault.payload))
            if fault and codec(NiFault).unpack(payload)["kind"] == NiFaultKind.RX_MISS:
                await stream_put(ctx, dut.miss_answer, self.answers.pop(0))

    def run(self, messages):
        dut = self.dut

        async def link(ctx):
            for index, view in enumerate(dut.endpoints):
                ctx.set(Value.cast(view), endpoint_entry(index))
            for msg in messages:
                for data, last in (msg.flits() if hasattr(msg, "flits") else msg):
                    await stream_put(ctx, dut.flits, codec(Flit).pack(data=data, last=last))
            await ctx.tick().repeat(20)

        watch = tracer(self.log, flit=transfer(dut.flits), last=dut.flits.payload.last,
                       asked=transfer(dut.translate),
                       lookup=Value.cast(dut.translate.payload),
                       staged=transfer(dut.staging), word=Value.cast(dut.staging.payload),
                       offered=dut.message.valid, handed=transfer(dut.message),
                       job=Value.cast(dut.message.payload),
                       fault=transfer(dut.fault), fault_bits=Value.cast(dut.fault.payload),
                       bad_crc=dut.count_bad_crc, misses=dut.count_misses)
        run(dut, self.translator, self.queue, self.os, watch, link, deadline_cycles=2000)

    def at(self, name):
        return edges(self.log, name)

    def jobs(self):
        return [codec(RxJob).unpack(self.log[edge]["job"]) for edge in self.at("handed")]

    def faults(self):
        return [codec(NiFault).unpack(self.log[edge]["fault_bits"])["kind"]
                for edge in self.at("fault")]


def test_a_good_message_is_staged_translated_and_offered_in_its_trailers_cycle():
    msg = message(payload_bytes=16, remote_va=0x1000_0008, dst_endpoint=2)
    bench = Bench()
    bench.run([msg])
    flits = bench.at("flit")
    # The translation is requested with the VA flit, in the endpoint's ASID with the key.
    assert bench.at("asked") == [flits[1]]
    lookup = codec(rx_lookup_layout(8)).unpack(bench.log[flits[1]]["lookup"])
    assert lookup == dict(asid=ASID + 2, key=KEY, va=0x1000_0008, length=16)
    # Both payload words are staged as they are taken, each with its index.
    words = [codec(RxStagedWord).unpack(bench.log[edge]["word"]) for edge in bench.at("staged")]
    assert bench.at("staged") == flits[3:5]
    assert [(word["index"], word["words"]) for word in words] == [(0, 2), (1, 2)]
    assert [word["data"] for word in words] == [int.from_bytes(msg.payload[i:i + 8], "little")
                                                for i in (0, 8)]
    # Offered and taken as a job in the trailer's cycle, stamped with it.
    assert bench.at("handed") == bench.at("offered") == [flits[-1]]
    job, = bench.jobs()
    assert (job["dst_endpoint"], job["length"], job["remote_va"], job["rejected"]) == (
        2, 16, 0x1000_0008, 0)
    assert job["ppn"][0] == 0x1000_0008 >> PAGE_BITS
    assert job["stamp"] == flits[-1]
    assert not bench.faults()


@pytest.mark.parametrize("flits, kind", [
    (raw_flits(length=16, words=2, bad_crc=True), NiFaultKind.BAD_CRC),
    (raw_flits(length=16, words=1), NiFaultKind.TRUNCATED),
    (raw_flits(length=16, words=2, dst_node=(NODE + 1) % (1 << NODE_BITS)),
     NiFaultKind.BAD_HEADER),
    (raw_flits(length=16, words=2, dst_endpoint=ENDPOINTS), NiFaultKind.BAD_ENDPOINT),
], ids=["crc", "truncated", "header", "endpoint"])
def test_a_bad_message_is_reported_and_never_offered_and_the_next_one_is(flits, kind):
    bench = Bench()
    bench.run([flits, message()])
    assert bench.faults() == [kind]
    assert len(bench.jobs()) == 1


def test_a_lone_last_flit_right_after_a_message_is_checked_against_the_crc_of_nothing():
    """A message of one ``last`` flit in the cycle after a good message's trailer: its CRC is
    that of no flits (0), whatever the message before left in the CRC, so it is TRUNCATED with
    the CRC of nothing and BAD_CRC with any other."""
    lone = raw_flits(length=16, words=0, last_at=0)
    lone_bad = raw_flits(length=16, words=0, last_at=0, bad_crc=True)
    bench = Bench()
    bench.run([message(), lone, message(), lone_bad, message()])
    assert bench.faults() == [NiFaultKind.TRUNCATED, NiFaultKind.BAD_CRC]
    assert len(bench.jobs()) == 3
    trailers = [edge for edge in bench.at("flit") if bench.log[edge]["last"]]
    assert trailers[1] == trailers[0] + 1 and trailers[3] == trailers[2] + 1


def test_a_refused_page_is_reported_and_a_rejected_miss_offered_as_rejected():
    bench = Bench(status=lambda va: {0x2000_0000: TlbStatus.KEY_FAULT,
                                     0x3000_0000: TlbStatus.MISS}.get(va, TlbStatus.HIT),
                  answers=[False, True])
    bench.run([message(remote_va=0x2000_0000), message(remote_va=0x3000_0000)])
    assert bench.faults() == [NiFaultKind.RX_KEY, NiFaultKind.RX_MISS, NiFaultKind.RX_MISS,
                              NiFaultKind.RX_REJECTED]
    # The retry asks for the same translation again.
    assert len(bench.at("asked")) == 3
    job, = bench.jobs()
    assert job["rejected"] == 1 and job["remote_va"] == 0x3000_0000
    assert bench.log[-1]["misses"] == 2


def test_the_first_payload_flit_waits_for_room_and_the_next_message_for_the_queue():
    """The queue has room for payload words only from edge 30 and takes a message 5 cycles
    after it is offered: the first payload flit goes in at edge 30, the next message's first
    flit in the cycle after its handoff."""
    bench = Bench(room_from=30, queue_wait=5)
    bench.run([message(payload_bytes=16), message()])
    flits = bench.at("flit")
    assert flits[3] == 30
    first, second = bench.at("handed")
    assert first == bench.at("offered")[0] + 5
    assert flits[6] == first + 1


def test_a_first_flit_waits_until_the_translator_is_ready():
    """A translator that answers 12 cycles after each request, and a first message discarded at
    its trailer (BAD_CRC) while its lookups are in flight: the second message's first flit is
    taken only once the translator is ready again."""
    bench = Bench(latency=12)
    bench.run([raw_flits(length=8, words=1, bad_crc=True), message(payload_bytes=0)])
    flits, asked = bench.at("flit"), bench.at("asked")
    assert bench.faults() == [NiFaultKind.BAD_CRC]
    assert flits[5] > asked[0] + 12
    assert len(bench.jobs()) == 1


def test_states_are_encoded_in_the_order_the_stall_report_names_them():
    assert fsm_states(MessageReceiver(), "receive") == STATES


@pytest.mark.parametrize("params, error", [
    (dict(node=16), ValueError), (dict(endpoints=0), ValueError), (dict(endpoints=17), ValueError),
    (dict(asid_bits=17), ValueError), (dict(endpoints="8"), TypeError),
])
def test_parameter_errors_name_the_parameter(params, error):
    name, value = next(iter(params.items()))
    with pytest.raises(error, match=f"^{name} must be "):
        MessageReceiver(**params)


def test_parameters_are_kept():
    receiver = MessageReceiver(node=None, endpoints=3, asid_bits=12)
    assert (receiver.node, receiver.endpoint_count, receiver.asid_bits) == (None, 3, 12)
    assert len(receiver.endpoints) == 3 and len(receiver.translate.payload.asid) == 12
    assert "node_id" in receiver.signature.members
    silence_unused(receiver)
