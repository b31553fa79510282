"""Unit tests of the NI's MMIO decoder (rtl/mmio.py) in the Amaranth simulator: the checks and
their order, what each register does, the answer's timing, the endpoint table's writes, and the
waits for the units a request needs. The units are the testbench: the TX engine's status and the
RX engine's tails are inputs it drives, the doorbell, Notifier and fault ports are ready when it
says."""

import pytest
from amaranth.hdl import Value

from rtl.layouts import (DESCRIPTOR_WORDS, PAGE_BITS, Doorbell, EndpointEntry, MmioStatus,
                         NiFault, NiFaultKind, NotifierCommandOp, NotifyMode, TxSlotWrite, TxStatus,
                         UserReg, codec, notifier_command_layout)
from rtl.mmio import MmioDecoder
from rtl.params import silence_unused
from tests.sim import background, edges, run, stream_get, stream_put, tracer, transfer

ASID, OTHER_ASID, THREAD = 0x5A, 0x3C, 0x21
ENTRY = dict(enabled=1, asid=ASID, thread=THREAD, ring_log2=3, ring_pa=0x0010_0040,
             ring_va=0x7F00_0000_0040)
DEADLINE = 400


def address(endpoint, offset):
    return endpoint << PAGE_BITS | (offset.value if isinstance(offset, UserReg) else offset)


class Bench:
    """A decoder of ``endpoints`` endpoints (2 unless told), endpoint 0 and 1 written with
    :data:`ENTRY` (1 with ``second`` fields changed) before the test starts. Its outputs are
    recorded in ``log`` at every edge; ``slot_write``, ``doorbell``, ``arm`` and ``fault`` are
    ready unless the test holds them (``held``)."""

    def __init__(self, *, endpoints=2, held=(), second=None):
        self.dut = MmioDecoder(node=3, endpoints=endpoints, contexts=2)
        self.held = set(held)
        self.second = ENTRY | (second or {})
        self.log = []

    def run(self, test):
        dut = self.dut

        async def testbench(ctx):
            for index, entry in ((0, ENTRY), (1, self.second)):
                if index < len(dut.endpoints):
                    await stream_put(ctx, dut.endpoint_write, dict(index=index, entry=entry))
            await test(ctx)

        @background
        async def ready(ctx):
            for name in ("slot_write", "doorbell", "arm", "fault"):
                if name not in self.held:
                    ctx.set(getattr(dut, name).ready, 1)

        watch = tracer(self.log, request=transfer(dut.request),
                       response=transfer(dut.response),
                       answer=Value.cast(dut.response.payload),
                       slot_write=transfer(dut.slot_write),
                       slot=Value.cast(dut.slot_write.payload),
                       doorbell=transfer(dut.doorbell),
                       rung=Value.cast(dut.doorbell.payload),
                       arm=transfer(dut.arm), armed=Value.cast(dut.arm.payload),
                       fault=transfer(dut.fault), faulted=Value.cast(dut.fault.payload),
                       ring_reset=dut.ring_reset)
        run(dut, testbench, ready, watch, deadline_cycles=DEADLINE)

    def taken(self, name, payload=None):
        """The payloads (integers) taken on output ``name`` (``payload`` the log's column)."""
        return [row[payload or name] for row in self.log if row[name]]


async def access(ctx, dut, offset, *, endpoint=0, write=False, data=0, asid=ASID):
    """One MMIO access, waited for; return its answer as (status, data)."""
    await stream_put(ctx, dut.request, dict(write=write, asid=asid,
                                            addr=address(endpoint, offset), data=data))
    answer = await stream_get(ctx, dut.response)
    return MmioStatus(answer.status), answer.data


@pytest.mark.parametrize("case, expected", [
    (dict(endpoint=2, offset=UserReg.STATUS), MmioStatus.BAD_ADDRESS),          # not there
    (dict(endpoint=1, offset=UserReg.STATUS), MmioStatus.BAD_ADDRESS),          # disabled
    (dict(offset=UserReg.STATUS.value + 4), MmioStatus.BAD_ADDRESS),            # not a word
    (dict(offset=UserReg.RING_HEAD.value + 8 * 64), MmioStatus.BAD_ADDRESS),   # no register
    (dict(offset=UserReg.DESCRIPTOR), MmioStatus.BAD_ADDRESS),                  # write-only
    (dict(offset=UserReg.ARM_LOCK), MmioStatus.BAD_ADDRESS),                    # write-only
    (dict(offset=UserReg.STATUS, write=True), MmioStatus.BAD_ADDRESS),          # read-only
    (dict(offset=UserReg.RING_TAIL, write=True), MmioStatus.BAD_ADDRESS),       # read-only
    (dict(endpoint=1, offset=UserReg.STATUS, asid=OTHER_ASID), MmioStatus.BAD_ADDRESS),
    (dict(offset=UserReg.STATUS, asid=OTHER_ASID), MmioStatus.FOREIGN_ASID),
    (dict(offset=UserReg.PAYLOAD, write=True, asid=OTHER_ASID), MmioStatus.FOREIGN_ASID),
    (dict(offset=UserReg.PAYLOAD, write=True), MmioStatus.SLOT_BUSY),
    (dict(offset=UserReg.DESCRIPTOR, write=True), MmioStatus.SLOT_BUSY),
    (dict(offset=UserReg.DOORBELL, write=True), MmioStatus.SLOT_BUSY),
    (dict(offset=UserReg.RING_HEAD, write=True, data=7, asid=OTHER_ASID), MmioStatus.FOREIGN_ASID),
    (dict(endpoint=1, offset=UserReg.RING_HEAD, write=True, data=7), MmioStatus.BAD_ADDRESS),
    (dict(offset=UserReg.RING_HEAD, write=True, data=7), MmioStatus.OK),        # not the slot
    (dict(offset=UserReg.STATUS), MmioStatus.OK),
])
def test_accesses_are_checked_in_order(case, expected):
    """BAD_ADDRESS (no such endpoint, disabled, not a word, no register, the wrong direction),
    then FOREIGN_ASID, then SLOT_BUSY (the TX slot or the doorbell while the send is busy): the
    first that applies answers; only FOREIGN_ASID reports a fault, and only OK changes
    anything."""
    bench = Bench(second=dict(enabled=0))
    dut = bench.dut
    answers, heads = [], []

    async def test(ctx):
        ctx.set(dut.tx_status[0], dict(busy=1, error=0, sent=0))
        answers.append(await access(ctx, dut, **case))
        await ctx.tick().repeat(2)
        heads.append((ctx.get(dut.ring_head[0]), ctx.get(dut.ring_head[1])))

    bench.run(test)
    assert answers[0] == (expected, 0 if expected != MmioStatus.OK or case.get("write")
                          else codec(TxStatus).pack(busy=1, error=0, sent=0))
    assert not bench.taken("slot_write") and not bench.taken("doorbell")
    assert heads == [(7 if expected == MmioStatus.OK and case.get("data") == 7 else 0, 0)]
    faults = [codec(NiFault).unpack(bits) for bits in bench.taken("fault", "faulted")]
    if expected == MmioStatus.FOREIGN_ASID:
        offset = case["offset"]
        assert faults == [dict(kind=NiFaultKind.FOREIGN_ASID, endpoint=0, asid=OTHER_ASID,
                               va=address(0, offset), node=3)]
    else:
        assert faults == []


def test_reads_answer_the_registers_and_writes_change_them_at_the_edge():
    """STATUS reads the TX engine's status, RING_TAIL the RX engine's tail, RING_HEAD what user
    code wrote last (16 bits), DOORBELL zero; each answer comes at the edge after the request
    is taken, and requests are taken one a cycle while the answers are taken."""
    bench = Bench()
    dut = bench.dut
    answers = []

    async def test(ctx):
        ctx.set(dut.tx_status[0], dict(busy=0, error=2, sent=7))
        ctx.set(dut.ring_tail[0], 0x1234)
        ctx.set(dut.ring_tail[1], 0x999)
        for offset, write, data in ((UserReg.RING_HEAD, True, 0xABCDE), (UserReg.RING_HEAD, 0, 0),
                                    (UserReg.RING_TAIL, 0, 0), (UserReg.STATUS, 0, 0),
                                    (UserReg.DOORBELL, 0, 0)):
            answers.append(await access(ctx, dut, offset, write=write, data=data))
        assert ctx.get(dut.ring_head[0]) == 0xBCDE and ctx.get(dut.ring_head[1]) == 0

    bench.run(test)
    assert answers == [(MmioStatus.OK, 0), (MmioStatus.OK, 0xBCDE), (MmioStatus.OK, 0x1234),
                       (MmioStatus.OK, codec(TxStatus).pack(busy=0, error=2, sent=7)),
                       (MmioStatus.OK, 0)]
    requests, responses = edges(bench.log, "request"), edges(bench.log, "response")
    assert all(response == request + 1 for request, response in zip(requests, responses))


def test_back_to_back_requests_are_taken_a_cycle_each_while_answers_are_taken():
    """With the answers taken as they come, a request is taken at every edge."""
    bench = Bench()
    dut = bench.dut

    async def test(ctx):
        ctx.set(dut.response.ready, 1)
        ctx.set(dut.request.valid, 1)
        for word in range(4):
            ctx.set(dut.request.payload, dict(write=1, asid=ASID, data=word,
                                              addr=address(0, UserReg.PAYLOAD.value + 8 * word)))
            await ctx.tick().until(dut.request.ready)
        ctx.set(dut.request.valid, 0)
        await ctx.tick().repeat(2)

    bench.run(test)
    requests = edges(bench.log, "request")
    assert requests == list(range(requests[0], requests[0] + 4))
    assert edges(bench.log, "response") == [edge + 1 for edge in requests]
    assert edges(bench.log, "slot_write") == requests


def test_an_answer_not_taken_holds_the_next_request():
    """While the answer before is not taken, no request is taken; the answer stays."""
    bench = Bench()
    dut = bench.dut

    async def test(ctx):
        ctx.set(dut.ring_tail[0], 0x55)
        ctx.set(dut.tx_status[0], dict(busy=0, error=0, sent=9))
        await stream_put(ctx, dut.request, dict(write=0, asid=ASID, data=0,
                                                addr=address(0, UserReg.RING_TAIL)))
        ctx.set(dut.request.valid, 1)
        ctx.set(dut.request.payload, dict(write=0, asid=ASID, data=0,
                                          addr=address(0, UserReg.STATUS)))
        for _ in range(3):
            await ctx.tick()
            assert not ctx.get(dut.request.ready)
            assert ctx.get(dut.response.valid)
            assert ctx.get(dut.response.payload.data) == 0x55
        ctx.set(dut.response.ready, 1)
        await ctx.tick().until(dut.request.ready)   # taken with the answer before
        ctx.set(dut.request.valid, 0)
        assert ctx.get(dut.response.valid)          # its own answer
        await ctx.tick()
        assert not ctx.get(dut.response.valid)

    bench.run(test)
    assert len(edges(bench.log, "request")) == 2
    assert len(edges(bench.log, "response")) == 2


def test_slot_writes_go_to_the_tx_engine_with_their_word():
    """DESCRIPTOR and PAYLOAD writes become slot writes (the descriptor's word, or the payload's
    word counted from PAYLOAD), in the cycle they are taken; OK answers them."""
    bench = Bench()
    dut = bench.dut
    answers = []

    async def test(ctx):
        for offset, data in ((8 * (DESCRIPTOR_WORDS - 1), 0x11), (UserReg.PAYLOAD.value, 0x22),
                             (UserReg.PAYLOAD.value + 8 * 255, 0x33)):
            answers.append(await access(ctx, dut, offset, endpoint=1, write=True, data=data))

    bench.run(test)
    assert answers == [(MmioStatus.OK, 0)] * 3
    assert [codec(TxSlotWrite).unpack(bits) for bits in bench.taken("slot_write", "slot")] == [
        dict(endpoint=1, descriptor=1, word=DESCRIPTOR_WORDS - 1, data=0x11),
        dict(endpoint=1, descriptor=0, word=0, data=0x22),
        dict(endpoint=1, descriptor=0, word=255, data=0x33)]
    assert edges(bench.log, "slot_write") == edges(bench.log, "request")


@pytest.mark.parametrize("port, offset, data", [("doorbell", UserReg.DOORBELL, 0),
                                                ("arm", UserReg.ARM_MODE, 2),
                                                ("fault", UserReg.STATUS, 0)])
def test_a_request_waits_for_the_unit_it_needs(port, offset, data):
    """A DOORBELL write waits for the doorbell port, ARM_MODE for the Notifier's, a FOREIGN_ASID
    access for the fault port (here, while the fault of a foreign access before is not taken):
    the request is taken in the cycle the unit takes its part (a foreign access, in the cycle
    after the fault before is taken), and not before."""
    bench = Bench(held={port})
    dut = bench.dut
    foreign = port == "fault"
    asid = OTHER_ASID if foreign else ASID
    answers = []

    async def test(ctx):
        if foreign:
            answers.append(await access(ctx, dut, offset, asid=asid))
        ctx.set(dut.request.valid, 1)
        ctx.set(dut.request.payload, dict(write=not foreign, asid=asid, data=data,
                                          addr=address(0, offset)))
        for _ in range(4):
            await ctx.tick()
            assert not ctx.get(dut.request.ready)
        ctx.set(getattr(dut, port).ready, 1)
        await ctx.tick().until(dut.request.ready)
        ctx.set(dut.request.valid, 0)
        answers.append(MmioStatus((await stream_get(ctx, dut.response)).status))
        await ctx.tick().repeat(2)

    bench.run(test)
    requests, taken = edges(bench.log, "request"), edges(bench.log, port)
    if foreign:
        # The first fault port frees at the edge its fault is taken; the second access is
        # taken at the next (and its fault too, the port being ready).
        assert len(requests) == len(taken) == 2 and requests[1] == taken[0] + 1
    else:
        assert len(requests) == len(taken) == 1 and requests[0] == taken[0]
    assert answers[-1] == (MmioStatus.FOREIGN_ASID if foreign else MmioStatus.OK)


def test_doorbell_and_arm_mode_carry_the_endpoint_and_the_arm_registers():
    """A doorbell names the endpoint and the access's ASID; ARM_MODE writes the Notifier's entry
    of the endpoint: the mode written, the table's ASID and thread, and the ARM_* values written
    before (each endpoint its own)."""
    bench = Bench(second=dict(thread=0x07))
    dut = bench.dut
    answers = []

    async def test(ctx):
        for endpoint, base in ((0, 0x1000), (1, 0x2000)):
            for offset, step in ((UserReg.ARM_LOCK, 0), (UserReg.ARM_HANDLER, 8),
                                 (UserReg.ARM_STACK, 16)):
                answers.append(await access(ctx, dut, offset, endpoint=endpoint, write=True,
                                            data=base + step))
        answers.append(await access(ctx, dut, UserReg.ARM_MODE, endpoint=1, write=True, data=3))
        answers.append(await access(ctx, dut, UserReg.DOORBELL, endpoint=1, write=True))

    bench.run(test)
    assert answers == [(MmioStatus.OK, 0)] * 8
    assert not bench.taken("slot_write")
    assert [codec(Doorbell).unpack(bits) for bits in bench.taken("doorbell", "rung")] == [
        dict(endpoint=1, asid=ASID)]
    command = codec(notifier_command_layout(2, 2))
    armed = [command.unpack(bits) for bits in bench.taken("arm", "armed")]
    assert len(armed) == 1 and armed[0]["op"] == NotifierCommandOp.WRITE_ENDPOINT
    assert armed[0]["index"] == 1
    entry = armed[0]["endpoint"]
    assert (entry["mode"], entry["asid"], entry["thread"]) == (NotifyMode.SPAWN, ASID, 0x07)
    assert (entry["lock"], entry["handler_pc"], entry["stack"]) == (0x2000, 0x2008, 0x2010)


def test_arm_mode_takes_interrupt_and_refuses_a_value_that_is_no_mode():
    """INTERRUPT (4) arms like any mode; 5 and a value with high bits set answer BAD_ADDRESS
    and send the Notifier nothing."""
    bench = Bench()
    dut = bench.dut
    answers = []

    async def test(ctx):
        for value in (5, (1 << 63) | NotifyMode.LOCK.value, NotifyMode.INTERRUPT.value):
            answers.append(await access(ctx, dut, UserReg.ARM_MODE, endpoint=1, write=True,
                                        data=value))

    bench.run(test)
    assert answers == [(MmioStatus.BAD_ADDRESS, 0)] * 2 + [(MmioStatus.OK, 0)]
    command = codec(notifier_command_layout(2, 2))
    armed = [command.unpack(bits) for bits in bench.taken("arm", "armed")]
    assert [entry["endpoint"]["mode"] for entry in armed] == [NotifyMode.INTERRUPT]


def test_an_endpoint_write_sets_the_entry_restarts_the_head_and_pulses_ring_reset():
    """A table write takes effect at the edge; the endpoint's head goes to 0 and its ring_reset
    is high for the one cycle after; an index the decoder does not have changes nothing."""
    bench = Bench(endpoints=2)
    dut = bench.dut
    changed = dict(ENTRY, asid=0x11, ring_log2=5)

    async def test(ctx):
        await access(ctx, dut, UserReg.RING_HEAD, write=True, data=9)
        await access(ctx, dut, UserReg.RING_HEAD, endpoint=1, write=True, data=5)
        for index in (2, 8, 1):      # 2 and 8 are not there (8 is 0 in three bits)
            await stream_put(ctx, dut.endpoint_write, dict(index=index, entry=changed))
        await ctx.tick()
        assert ctx.get(Value.cast(dut.endpoints[1])) == codec(EndpointEntry).pack(**changed)
        assert ctx.get(Value.cast(dut.endpoints[0])) == codec(EndpointEntry).pack(**ENTRY)
        assert (ctx.get(dut.ring_head[0]), ctx.get(dut.ring_head[1])) == (9, 0)

    bench.run(test)
    # The two writes before the test (endpoints 0 and 1), then endpoint 1's.
    resets = [row["ring_reset"] for row in bench.log if row["ring_reset"]]
    assert resets == [0b01, 0b10, 0b10]


def test_a_fault_not_taken_keeps_its_access_while_others_go_on():
    """The FOREIGN_ASID fault of an access stays as it was while the fault port does not take
    it, whatever is accessed meanwhile (here, good accesses of another register)."""
    bench = Bench(held={"fault"})
    dut = bench.dut
    answers = []

    async def test(ctx):
        answers.append(await access(ctx, dut, UserReg.RING_TAIL, asid=OTHER_ASID))
        for _ in range(3):
            answers.append(await access(ctx, dut, UserReg.RING_HEAD, endpoint=1, write=True,
                                        data=4))
        ctx.set(dut.fault.ready, 1)
        await ctx.tick().repeat(2)

    bench.run(test)
    assert [status for status, _ in answers] == [MmioStatus.FOREIGN_ASID] + [MmioStatus.OK] * 3
    assert [codec(NiFault).unpack(bits) for bits in bench.taken("fault", "faulted")] == [
        dict(kind=NiFaultKind.FOREIGN_ASID, endpoint=0, asid=OTHER_ASID,
             va=address(0, UserReg.RING_TAIL), node=3)]


@pytest.mark.parametrize("params, error, text", [
    (dict(node=16), ValueError, "node must be between 0 and 15, not 16"),
    (dict(endpoints=0), ValueError, "endpoints must be between 1 and 16, not 0"),
    (dict(endpoints=17), ValueError, "endpoints must be between 1 and 16, not 17"),
    (dict(contexts=0), ValueError, "contexts must be between 1 and 8, not 0"),
    (dict(contexts=9), ValueError, "contexts must be between 1 and 8, not 9"),
    (dict(endpoints=2.0), TypeError, "endpoints must be an integer, not 2.0"),
])
def test_bad_parameters_raise_naming_themselves(params, error, text):
    with pytest.raises(error, match=f"^{text}"):
        MmioDecoder(**params)


def test_default_parameters_and_the_node_strap():
    """8 endpoints, 4 contexts, node 0 built in; node None brings the ``node_id`` strap."""
    decoder = MmioDecoder()
    assert (decoder.node, len(decoder.endpoints), len(decoder.ring_head)) == (0, 8, 8)
    assert not hasattr(decoder, "node_id")
    assert decoder.arm.payload.shape() == notifier_command_layout(8, 4)
    strapped = MmioDecoder(node=None)
    assert strapped.node is None and len(strapped.node_id) == 4
    silence_unused(decoder)
    silence_unused(strapped)

