"""Unit tests of the network interface's own logic (rtl/ni.py) in the Amaranth simulator: the
MMIO decoder, the OS port and the fault merge, against the contract in the module docstring of
rtl/ni.py; and two processes, each on an endpoint of its own, kept to their own address spaces.
The engines, TLB, MessageBuffer, lock table and Notifier are the real ones (they have their own
tests); node memory and the core caches are a responder that answers every coherence request
"not dirty" and every memory read with zeros."""

import pytest
from amaranth.hdl import Value

from behavioral.message import Message
from rtl.layouts import (DESCRIPTOR_WORDS, FLIT_BYTES, LINE_BYTES, LINE_WORDS, PAGE_BITS,
                         CohResponse, Flit, LineBeat, LineRequest, LockOp, LockOsEvent,
                         LockOsReason, LockReleased, LockRequest, LockResponse, LockStatus,
                         MmioRequest, MmioResponse, MmioStatus, NiEngine, NiFault, NiFaultKind,
                         NiOsOp, NiTunable, NotifyMode, SendDescriptor, SendFlags, TlbOp, TxError,
                         TxStatus, UserReg, WordBeat, codec, ni_os_command_layout)
from rtl.ni import NetworkInterface
from tests.sim import background, run, stream_get, stream_put, transfer

OS_COMMAND = codec(ni_os_command_layout())

#: A configuration small enough to elaborate and build a simulator for in about two seconds.
SMALL = dict(node=0, nodes=2, endpoints=2, contexts=2, tlb_entries=4, lines=8, tx_lines=2,
             rx_lines=4, lock_entries=4, lock_waiters=4)
ASID, OTHER_ASID = 0x5A, 0x3C
THREAD = 0x21
KEY = 0xBEEF
RING_PA = 0x0010_0040           # COMPLETION_BYTES aligned
RING_VA = 0x7F00_0000_0040
REMOTE_VA = 0x4000_0000_1000    # the receive window's page, mapped to PPN
PPN = 0x200
LOCK_VA = 0x6000_0040
MASK64 = (1 << 64) - 1
#: Every test is done well before this many cycles.
DEADLINE = 1500


def endpoint_entry(**fields):
    return dict(enabled=1, asid=ASID, thread=THREAD, ring_log2=2, ring_pa=RING_PA,
                ring_va=RING_VA) | fields


def window_fill():
    """The TLB command mapping the receive window for remote writes with KEY."""
    return dict(op=TlbOp.FILL, asid=ASID, vpn=REMOTE_VA >> PAGE_BITS, ppn=PPN,
                perm={"remote_write": 1}, key=KEY)


def arrival(*, dst_endpoint=0, notify=True, remote_va=REMOTE_VA, payload=bytes(range(8))):
    """A message (of 8 bytes unless told) from node 1 to this node."""
    return Message(dst_node=0, src_node=1, dst_endpoint=dst_endpoint, notify=notify, seq=3,
                   key=KEY, remote_va=remote_va, metadata=0x1111_2222_3333_4444,
                   payload=payload)


def descriptor_words(**fields):
    packed = codec(SendDescriptor).pack(**fields)
    return [(packed >> (64 * i)) & MASK64 for i in range(DESCRIPTOR_WORDS)]


def status(busy=0, error=TxError.NONE, sent=0):
    return codec(TxStatus).pack(busy=busy, error=error, sent=sent)


def fault(kind, *, endpoint, asid, va=0, node=0):
    return codec(NiFault).unpack(codec(NiFault).pack(kind=kind, endpoint=endpoint, asid=asid,
                                                     va=va, node=node))


class Bench:
    """A small NI with its memory side answered and its outputs recorded.

    ``taken[name]`` lists the payloads (integers) taken on each output of :attr:`RECORDED`, in
    order; those outputs are always ready except the ones named in ``held``, whose ``ready`` the
    test drives. The test is one coroutine, given to :meth:`run`, using the drivers below; it
    must finish within :data:`DEADLINE` cycles.
    """

    RECORDED = ("link_tx", "fault", "lock_os", "notify_os", "lock_released", "notify",
                "mem_write", "mc_data", "dma_read")

    def __init__(self, *, held=(), **params):
        self.dut = NetworkInterface(**SMALL | params)
        self.held = set(held)
        self.taken = {name: [] for name in self.RECORDED}

    def run(self, test):
        run(self.dut, test, self._monitor, self._coherence, self._memory, self._dma,
            deadline_cycles=DEADLINE)

    # The environment ----------------------------------------------------------------------------

    @background
    async def _monitor(self, ctx):
        ports = [getattr(self.dut, name) for name in self.RECORDED]
        for name, port in zip(self.RECORDED, ports):
            if name not in self.held:
                ctx.set(port.ready, 1)
        async for _, _, *values in ctx.tick().sample(
                *(x for port in ports for x in (transfer(port), Value.cast(port.payload)))):
            for name, taken, payload in zip(self.RECORDED, values[0::2], values[1::2]):
                if taken:
                    self.taken[name].append(payload)

    @background
    async def _coherence(self, ctx):
        """No core cache holds any line dirty: one answer per request, in order. (Written as an
        ``async for`` over the edges, not with ``stream_get``, so that it is not left inside
        ``until`` when the simulation ends.)"""
        request, answer = self.dut.coh_req, self.dut.coh_resp
        ctx.set(request.ready, 1)
        ctx.set(Value.cast(answer.payload), codec(CohResponse).pack(dirty=0, data=0, last=1))
        owed = 0
        async for _, _, asked, answered in ctx.tick().sample(transfer(request),
                                                              transfer(answer)):
            owed += asked - answered
            ctx.set(answer.valid, owed > 0)

    @background
    async def _memory(self, ctx, request=None, answer=None):
        """Node memory holds zeros: a line of words per read, in order (the MessageBuffer's
        reads, or those given)."""
        request = request or self.dut.mem_read
        answer = answer or self.dut.mem_read_data
        ctx.set(request.ready, 1)
        owed = 0
        async for _, _, asked, answered in ctx.tick().sample(transfer(request),
                                                              transfer(answer)):
            owed += LINE_WORDS * asked - answered
            ctx.set(answer.valid, owed > 0)
            ctx.set(Value.cast(answer.payload),
                    codec(WordBeat).pack(data=0, last=int(owed % LINE_WORDS == 1)))

    @background
    async def _dma(self, ctx):
        """The TX engine's DMA reads, from the same memory of zeros."""
        await self._memory(ctx, self.dut.dma_read, self.dut.dma_data)

    # Drivers ------------------------------------------------------------------------------------

    async def os(self, ctx, op, **fields):
        await stream_put(ctx, self.dut.os_command, OS_COMMAND.pack(op=op, **fields))

    async def write_endpoint(self, ctx, index, **fields):
        await self.os(ctx, NiOsOp.WRITE_ENDPOINT, index=index, endpoint=endpoint_entry(**fields))

    async def write_context(self, ctx, index, *, busy):
        """Write SMT context ``index``: holding THREAD (``busy``) or nothing."""
        await self.os(ctx, NiOsOp.WRITE_CONTEXT, index=index,
                      context={"busy": busy, "evictable": 0, "thread": THREAD})

    async def mmio(self, ctx, write, endpoint, offset, data=0, *, asid=ASID):
        """Make one access; return ``(MmioStatus, data)`` of its answer."""
        offset = offset.value if isinstance(offset, UserReg) else offset
        await stream_put(ctx, self.dut.cpu_request, codec(MmioRequest).pack(
            write=write, asid=asid, addr=endpoint << PAGE_BITS | offset, data=data))
        answer = codec(MmioResponse).unpack(
            (await stream_get(ctx, self.dut.cpu_response)).as_bits())
        return answer["status"], answer["data"]

    async def read(self, ctx, endpoint, offset, *, asid=ASID):
        return await self.mmio(ctx, 0, endpoint, offset, asid=asid)

    async def write(self, ctx, endpoint, offset, data, *, asid=ASID):
        status, value = await self.mmio(ctx, 1, endpoint, offset, data, asid=asid)
        assert value == 0, "a write answers no data"
        return status

    async def register(self, ctx, endpoint, reg, *, asid=ASID):
        """Read a register that must answer OK; return its value."""
        status, value = await self.read(ctx, endpoint, reg, asid=asid)
        assert status == MmioStatus.OK, f"read of {reg.name} answered {status.name}"
        return value

    async def post(self, ctx, endpoint, words=(), payload=(), *, doorbell=True, asid=ASID):
        """Write descriptor words, then payload words, then (if asked) the doorbell; each write
        must answer OK."""
        writes = [(8 * i, word) for i, word in enumerate(words)]
        writes += [(UserReg.PAYLOAD.value + 8 * i, word) for i, word in enumerate(payload)]
        writes += [(UserReg.DOORBELL.value, 0)] if doorbell else []
        for offset, word in writes:
            status = await self.write(ctx, endpoint, offset, word, asid=asid)
            assert status == MmioStatus.OK, hex(offset)

    async def deliver(self, ctx, message):
        for data, last in message.flits():
            await stream_put(ctx, self.dut.link_rx, codec(Flit).pack(data=data, last=last))

    async def lock(self, ctx, op, addr, *, thread=THREAD):
        """Make one lock operation in ASID; return its LockStatus."""
        await stream_put(ctx, self.dut.lock_request, codec(LockRequest).pack(
            op=op, asid=ASID, addr=addr, thread=thread))
        response = codec(LockResponse).unpack(
            (await stream_get(ctx, self.dut.lock_response)).as_bits())
        assert response["thread"] == thread
        return response["status"]

    async def wait_for(self, ctx, condition, what, *, cycles=400):
        """Tick until ``condition()`` holds."""
        for _ in range(cycles):
            if condition():
                return
            await ctx.tick()
        raise AssertionError(f"{what}: not within {cycles} cycles")

    async def idle(self, ctx, endpoint, *, asid=ASID):
        """Wait until ``endpoint``'s STATUS shows busy low; return STATUS."""
        for _ in range(100):
            value = await self.register(ctx, endpoint, UserReg.STATUS, asid=asid)
            if not codec(TxStatus).field(value, "busy"):
                return value
        raise AssertionError(f"endpoint {endpoint} stays busy")

    async def probe(self, ctx, pa):
        """Read the line holding physical address ``pa`` from the MessageBuffer as a core's L1
        miss does (``mc_lookup``); return its words, or None if the buffer does not hold it."""
        start = len(self.taken["mc_data"])
        await stream_put(ctx, self.dut.mc_lookup, codec(LineRequest).pack(addr=pa // LINE_BYTES))
        await self.wait_for(ctx, lambda: any(codec(LineBeat).field(bits, "last")
                                             for bits in self.taken["mc_data"][start:]),
                            f"the answer to the probe of {pa:#x}")
        beats = [codec(LineBeat).unpack(bits) for bits in self.taken["mc_data"][start:]]
        return [beat["data"] for beat in beats] if beats[0]["hit"] else None

    def count(self, ctx, name):
        return ctx.get(getattr(self.dut, f"count_{name}"))

    def faults(self):
        return [codec(NiFault).unpack(bits) for bits in self.taken["fault"]]

    def sent(self):
        """The messages taken on ``link_tx``."""
        flits = [(codec(Flit).field(bits, "data"), codec(Flit).field(bits, "last"))
                 for bits in self.taken["link_tx"]]
        messages, start = [], 0
        for index, (_, last) in enumerate(flits):
            if last:
                messages.append(Message.from_flits(flits[start:index + 1]))
                start = index + 1
        assert start == len(flits), "a message was cut short"
        return messages


# MMIO decoder: registers, bad addresses, foreign ASIDs --------------------------------------------

def test_registers_read_back_and_write_endpoint_restarts_the_ring():
    bench = Bench()
    seen = {}

    async def test(ctx):
        await bench.write_endpoint(ctx, 0)
        for reg in (UserReg.STATUS, UserReg.RING_HEAD, UserReg.RING_TAIL, UserReg.DOORBELL):
            seen[reg] = await bench.read(ctx, 0, reg)
        seen["head write"] = await bench.write(ctx, 0, UserReg.RING_HEAD, 0xFFFF_0000_0001_0005)
        seen["head"] = await bench.register(ctx, 0, UserReg.RING_HEAD)
        await bench.write_endpoint(ctx, 0, thread=7)
        seen["head after WRITE_ENDPOINT"] = await bench.register(ctx, 0, UserReg.RING_HEAD)

    bench.run(test)
    assert seen[UserReg.STATUS] == (MmioStatus.OK, status())
    assert seen[UserReg.RING_HEAD] == seen[UserReg.RING_TAIL] == (MmioStatus.OK, 0)
    assert seen[UserReg.DOORBELL] == (MmioStatus.OK, 0)
    assert seen["head write"] == MmioStatus.OK
    assert seen["head"] == 0x0005, "RING_HEAD keeps the low 16 bits"
    assert seen["head after WRITE_ENDPOINT"] == 0
    assert bench.faults() == [] and bench.sent() == []


#: Accesses answered BAD_ADDRESS: (what, write, endpoint, offset, asid). Endpoint 0 is enabled
#: (ASID), endpoint 1 disabled (its table entry is zero, so ASID 0 matches it), 2 and 15 absent.
BAD_ADDRESSES = [
    ("disabled endpoint, read", 0, 1, UserReg.STATUS.value, 0),
    ("disabled endpoint, write", 1, 1, UserReg.RING_HEAD.value, 0),
    ("disabled endpoint, doorbell", 1, 1, UserReg.DOORBELL.value, 0),
    ("endpoint beyond endpoints", 0, 2, UserReg.STATUS.value, ASID),
    ("endpoint 15", 1, 15, UserReg.RING_HEAD.value, ASID),
    ("unaligned read", 0, 0, UserReg.STATUS.value + 4, ASID),
    ("unaligned head write", 1, 0, UserReg.RING_HEAD.value + 1, ASID),
    ("unaligned doorbell", 1, 0, UserReg.DOORBELL.value + 2, ASID),
    ("unaligned descriptor word", 1, 0, 0x004, ASID),
    ("unaligned payload word", 1, 0, UserReg.PAYLOAD.value + 4, ASID),
    ("unaligned ARM_MODE", 1, 0, UserReg.ARM_MODE.value + 7, ASID),
    ("unknown offset, read", 0, 0, 0x060, ASID),
    ("unknown offset, write", 1, 0, 0x7F8, ASID),
    ("read of DESCRIPTOR", 0, 0, UserReg.DESCRIPTOR.value, ASID),
    ("read of DESCRIPTOR word 3", 0, 0, 0x018, ASID),
    ("read of PAYLOAD", 0, 0, UserReg.PAYLOAD.value, ASID),
    ("read of the last PAYLOAD word", 0, 0, 0xFF8, ASID),
    *((f"read of {reg.name}", 0, 0, reg.value, ASID)
      for reg in (UserReg.ARM_MODE, UserReg.ARM_LOCK, UserReg.ARM_HANDLER, UserReg.ARM_STACK)),
    ("write of STATUS", 1, 0, UserReg.STATUS.value, ASID),
    ("write of RING_TAIL", 1, 0, UserReg.RING_TAIL.value, ASID),
    ("read of DESCRIPTOR, foreign ASID", 0, 0, UserReg.DESCRIPTOR.value, OTHER_ASID),
]


def test_bad_address_answers_and_changes_nothing():
    bench = Bench()
    answers, after = {}, {}

    async def test(ctx):
        await bench.write_endpoint(ctx, 0)
        await bench.write(ctx, 0, UserReg.RING_HEAD, 3)
        for what, write, endpoint, offset, asid in BAD_ADDRESSES:
            answers[what] = await bench.mmio(ctx, write, endpoint, offset, 0xFFFF, asid=asid)
        for reg in (UserReg.STATUS, UserReg.RING_HEAD, UserReg.RING_TAIL):
            after[reg] = await bench.register(ctx, 0, reg)
        await ctx.tick().repeat(20)     # time for a wrongly rung doorbell to send

    bench.run(test)
    for what, *_ in BAD_ADDRESSES:
        assert answers[what] == (MmioStatus.BAD_ADDRESS, 0), what
    assert after == {UserReg.STATUS: status(), UserReg.RING_HEAD: 3, UserReg.RING_TAIL: 0}
    assert bench.faults() == [], "BAD_ADDRESS reports no fault"
    assert bench.sent() == []


def test_foreign_asid_answers_reports_one_fault_each_and_changes_nothing():
    bench = Bench()
    answers, after = [], {}
    accesses = [(0, UserReg.STATUS), (1, UserReg.RING_HEAD), (1, UserReg.DOORBELL),
                (1, UserReg.ARM_MODE), (1, UserReg.DESCRIPTOR)]

    async def test(ctx):
        await bench.write_endpoint(ctx, 1)
        await bench.write(ctx, 1, UserReg.RING_HEAD, 2)
        for write, reg in accesses:
            answers.append(await bench.mmio(ctx, write, 1, reg, 0x1234, asid=OTHER_ASID))
        for reg in (UserReg.STATUS, UserReg.RING_HEAD):
            after[reg] = await bench.register(ctx, 1, reg)
        await ctx.tick().repeat(20)

    bench.run(test)
    assert answers == [(MmioStatus.FOREIGN_ASID, 0)] * len(accesses)
    assert bench.faults() == [
        fault(NiFaultKind.FOREIGN_ASID, endpoint=1, asid=OTHER_ASID, va=1 << PAGE_BITS | reg.value)
        for _, reg in accesses]
    assert after == {UserReg.STATUS: status(), UserReg.RING_HEAD: 2}
    assert bench.sent() == []


def test_foreign_asid_waits_while_its_fault_is_not_taken():
    """The decoder holds one FOREIGN_ASID fault: a second foreign access waits until the first
    fault is taken; other accesses go on meanwhile."""
    bench = Bench(held={"fault"})
    seen = {}

    async def test(ctx):
        dut = bench.dut
        await bench.write_endpoint(ctx, 0)
        seen["first"] = await bench.read(ctx, 0, UserReg.STATUS, asid=OTHER_ASID)
        seen["own while pending"] = await bench.read(ctx, 0, UserReg.RING_TAIL)
        ctx.set(dut.cpu_request.valid, 1)
        ctx.set(Value.cast(dut.cpu_request.payload), codec(MmioRequest).pack(
            write=0, asid=OTHER_ASID + 1, addr=UserReg.RING_HEAD.value))
        readies = []
        for _ in range(10):
            _, _, ready = await ctx.tick().sample(dut.cpu_request.ready)
            readies.append(ready)
        seen["second taken while pending"] = any(readies)
        ctx.set(dut.fault.ready, 1)
        await ctx.tick().until(dut.cpu_request.ready)
        ctx.set(dut.cpu_request.valid, 0)
        seen["second"] = codec(MmioResponse).unpack(
            (await stream_get(ctx, dut.cpu_response)).as_bits())
        await ctx.tick().repeat(5)

    bench.run(test)
    assert seen["first"] == (MmioStatus.FOREIGN_ASID, 0)
    assert seen["own while pending"] == (MmioStatus.OK, 0)
    assert not seen["second taken while pending"]
    assert seen["second"]["status"] == MmioStatus.FOREIGN_ASID
    assert [(f["kind"], f["asid"], f["va"]) for f in bench.faults()] == [
        (NiFaultKind.FOREIGN_ASID, OTHER_ASID, UserReg.STATUS.value),
        (NiFaultKind.FOREIGN_ASID, OTHER_ASID + 1, UserReg.RING_HEAD.value)]


# Sending through MMIO ----------------------------------------------------------------------------

SEND = dict(dst_node=1, dst_endpoint=3, flags=SendFlags.NOTIFY.value, length=24, key=0x7777,
            remote_va=0x1234_5678_9008, metadata=0xDEAD_BEEF_0123_4567)
PAYLOAD = [0x0102_0304_0506_0708, 0x1112_1314_1516_1718, 0xF1F2_F3F4_F5F6_F7F8]


def test_pio_send_through_mmio_alone():
    """Descriptor, payload and doorbell written through MMIO make the message the descriptor
    describes; while it is sent, STATUS is busy and the slot refuses writes (SLOT_BUSY); writes
    that are not OK change nothing; then STATUS counts it sent."""
    bench = Bench(held={"link_tx"})
    seen = {}

    async def test(ctx):
        await bench.write_endpoint(ctx, 1)
        await bench.post(ctx, 1, descriptor_words(**SEND), PAYLOAD, doorbell=False)
        seen["not ok"] = [
            await bench.write(ctx, 1, UserReg.PAYLOAD.value + 4, MASK64),
            await bench.write(ctx, 1, UserReg.PAYLOAD, MASK64, asid=OTHER_ASID),
            await bench.write(ctx, 1, 0x008, MASK64, asid=OTHER_ASID)]
        await bench.post(ctx, 1, doorbell=True)
        # The link is not ready: the send cannot finish while STATUS and the slot are probed.
        seen["busy"] = await bench.register(ctx, 1, UserReg.STATUS)
        seen["slot busy"] = [await bench.write(ctx, 1, offset, MASK64)
                             for offset in (0x000, 0x018, UserReg.PAYLOAD.value,
                                            UserReg.PAYLOAD.value + 16, UserReg.DOORBELL.value)]
        seen["head while busy"] = await bench.write(ctx, 1, UserReg.RING_HEAD, 1)
        ctx.set(bench.dut.link_tx.ready, 1)
        seen["idle"] = await bench.idle(ctx, 1)
        # The descriptor stays in the slot: a new payload word and the doorbell send again.
        await bench.post(ctx, 1, payload=[0x5555], doorbell=True)
        seen["idle again"] = await bench.idle(ctx, 1)

    bench.run(test)
    assert seen["not ok"] == [MmioStatus.BAD_ADDRESS, MmioStatus.FOREIGN_ASID,
                              MmioStatus.FOREIGN_ASID]
    assert seen["busy"] == status(busy=1)
    assert seen["slot busy"] == [MmioStatus.SLOT_BUSY] * 5
    assert seen["head while busy"] == MmioStatus.OK, "RING_HEAD is not part of the slot"
    assert seen["idle"] == status(sent=1) and seen["idle again"] == status(sent=2)
    header = dict(dst_node=1, src_node=0, dst_endpoint=3, src_endpoint=1, notify=True,
                  key=0x7777, remote_va=0x1234_5678_9008, metadata=0xDEAD_BEEF_0123_4567)
    payload = b"".join(word.to_bytes(FLIT_BYTES, "little") for word in PAYLOAD)
    assert bench.sent() == [
        Message(seq=0, payload=payload, **header),
        Message(seq=1, payload=(0x5555).to_bytes(FLIT_BYTES, "little") + payload[8:], **header)]


def test_refused_descriptor_shows_its_error_and_sends_nothing():
    bench = Bench()
    seen = {}

    async def test(ctx):
        await bench.write_endpoint(ctx, 0)
        await bench.post(ctx, 0, descriptor_words(**SEND | dict(length=12)), PAYLOAD[:2])
        seen["status"] = await bench.idle(ctx, 0)
        seen["rewrite"] = await bench.write(ctx, 0, 0x000, 0)
        await ctx.tick().repeat(20)
        seen["refused"] = bench.count(ctx, "tx_refused")

    bench.run(test)
    assert seen["status"] == status(error=TxError.BAD_LENGTH)
    assert seen["rewrite"] == MmioStatus.OK, "a refused slot may be written again at once"
    assert seen["refused"] == 1
    assert bench.sent() == [] and bench.faults() == []


# Notification arming and the OS port -------------------------------------------------------------

async def set_up_receiver(bench, ctx, *, endpoint=0):
    """Enable ``endpoint``, map the receive window and arm LOCK on LOCK_VA."""
    await bench.write_endpoint(ctx, endpoint)
    await bench.os(ctx, NiOsOp.TLB, tlb=window_fill())
    for reg, value in ((UserReg.ARM_LOCK, LOCK_VA), (UserReg.ARM_HANDLER, 0x4000_0000),
                       (UserReg.ARM_STACK, 0x7FFF_F000), (UserReg.ARM_MODE, NotifyMode.LOCK.value)):
        assert await bench.write(ctx, endpoint, reg, value) == MmioStatus.OK, reg.name


def released(context):
    return codec(LockReleased).pack(context=context, thread=THREAD, asid=ASID, addr=LOCK_VA)


def not_resident():
    return codec(LockOsEvent).pack(reason=LockOsReason.NOT_RESIDENT, thread=THREAD, asid=ASID,
                                   addr=LOCK_VA)


@pytest.mark.parametrize("contexts, released_, os_events", [
    pytest.param([(0, 1)], [released(0)], [], id="resident-in-context-0"),
    pytest.param([(1, 1)], [released(1)], [], id="resident-in-context-1"),
    pytest.param([(1, 1), (1, 0)], [], [not_resident()], id="evicted"),
    pytest.param([], [], [not_resident()], id="never-resident"),
])
def test_arm_lock_then_arrival_releases_the_waiting_thread(contexts, released_, os_events):
    """ARM_MODE LOCK after ARM_LOCK makes an arrival SIGNAL the armed lock; WRITE_CONTEXT tells
    the lock table where the woken thread is (or that it is in no context: the OS gets it)."""
    bench = Bench()
    seen = {}

    async def test(ctx):
        for index, busy in contexts:
            await bench.write_context(ctx, index, busy=busy)
        await set_up_receiver(bench, ctx)
        seen["wait"] = await bench.lock(ctx, LockOp.WAIT, LOCK_VA)
        await bench.deliver(ctx, arrival())
        await bench.wait_for(ctx, lambda: bench.count(ctx, "rx_delivered") == 1, "delivery")
        await bench.wait_for(ctx, lambda: bench.taken["lock_released"] or bench.taken["lock_os"],
                             "the wake-up")
        seen["tail"] = await bench.register(ctx, 0, UserReg.RING_TAIL)
        seen["counts"] = {name: bench.count(ctx, f"notify_{name}") for name in ("none", "lock")}

    bench.run(test)
    assert seen["wait"] == LockStatus.BLOCKED
    assert bench.taken["lock_released"] == released_
    assert bench.taken["lock_os"] == os_events
    assert seen["tail"] == 1
    assert seen["counts"] == {"none": 0, "lock": 1}
    assert bench.faults() == []


def test_write_endpoint_disarms_and_restarts_the_ring():
    bench = Bench()
    seen = {}

    async def test(ctx):
        await set_up_receiver(bench, ctx)
        await bench.deliver(ctx, arrival())
        await bench.wait_for(ctx, lambda: bench.count(ctx, "notify_lock") == 1, "the SIGNAL")
        await bench.write(ctx, 0, UserReg.RING_HEAD, 1)
        seen["before"] = [await bench.register(ctx, 0, reg)
                          for reg in (UserReg.RING_HEAD, UserReg.RING_TAIL)]
        await bench.write_endpoint(ctx, 0)
        seen["after"] = [await bench.register(ctx, 0, reg)
                         for reg in (UserReg.RING_HEAD, UserReg.RING_TAIL)]
        await bench.deliver(ctx, arrival(remote_va=REMOTE_VA + 0x40))
        await bench.wait_for(ctx, lambda: bench.count(ctx, "notify_none") == 1, "the arrival")
        # (the tail moves at the edge after the one the Notifier takes the completion at, before
        # the core can act on the event the Notifier shows from then)
        await ctx.tick()
        seen["tail"] = await bench.register(ctx, 0, UserReg.RING_TAIL)
        seen["lock"] = bench.count(ctx, "notify_lock")
        # The arming values survive WRITE_ENDPOINT: ARM_MODE alone arms the same lock again.
        assert await bench.write(ctx, 0, UserReg.ARM_MODE, NotifyMode.LOCK.value) == MmioStatus.OK
        await bench.deliver(ctx, arrival(remote_va=REMOTE_VA + 0x80))
        await bench.wait_for(ctx, lambda: bench.count(ctx, "notify_lock") == 2,
                             "the re-armed SIGNAL")

    bench.run(test)
    assert seen["before"] == [1, 1] and seen["after"] == [0, 0]
    assert seen["tail"] == 1 and seen["lock"] == 1
    assert bench.faults() == []


# MISS_ANSWER routing -----------------------------------------------------------------------------

DMA_VA = 0x2222_0000_0010


def test_miss_answer_goes_to_the_engine_it_names():
    """Both engines wait on a miss; MISS_ANSWER for RX rejects only the message, MISS_ANSWER for
    TX only the send."""
    bench = Bench()
    seen = {}

    async def test(ctx):
        await bench.write_endpoint(ctx, 0)
        await bench.write_endpoint(ctx, 1)
        await bench.post(ctx, 1, descriptor_words(**SEND | dict(flags=SendFlags.DMA.value,
                                                                 local_va=DMA_VA)))
        await bench.deliver(ctx, arrival())
        await bench.wait_for(ctx, lambda: len(bench.taken["fault"]) == 2, "both misses")
        await bench.os(ctx, NiOsOp.MISS_ANSWER, engine=NiEngine.RX, reject=1)
        await bench.wait_for(ctx, lambda: bench.count(ctx, "rx_rejected") == 1, "the rejection")
        seen["tx while rx answered"] = await bench.register(ctx, 1, UserReg.STATUS)
        await bench.os(ctx, NiOsOp.MISS_ANSWER, engine=NiEngine.TX, reject=1)
        seen["tx"] = await bench.idle(ctx, 1)
        seen["tail"] = await bench.register(ctx, 0, UserReg.RING_TAIL)
        seen["delivered"] = bench.count(ctx, "rx_delivered")

    bench.run(test)
    faults = bench.faults()
    assert sorted(faults[:2], key=lambda f: f["kind"].value) == [
        fault(NiFaultKind.TX_MISS, endpoint=1, asid=ASID, va=DMA_VA & ~0xFFF),
        fault(NiFaultKind.RX_MISS, endpoint=0, asid=ASID, va=REMOTE_VA, node=1)]
    assert faults[2:] == [fault(NiFaultKind.RX_REJECTED, endpoint=0, asid=ASID, va=REMOTE_VA,
                                node=1)]
    assert seen["tx while rx answered"] == status(busy=1)
    assert seen["tx"] == status(error=TxError.DMA_REJECTED)
    assert seen["tail"] == 1, "a rejected message writes a completion entry"
    assert seen["delivered"] == 0
    assert bench.sent() == []


@pytest.mark.parametrize("engine", [NiEngine.RX, NiEngine.TX])
@pytest.mark.parametrize("gap_cycles", [0, 2])
def test_miss_answered_retry_after_a_fill_succeeds(engine, gap_cycles):
    """A miss, then the OS's FILL and MISS_ANSWER retry, ``gap_cycles`` apart (0: back to back,
    as the OS driver of behavioral/vm.py sends them): the retried lookup sees the fill, and the
    message is delivered (RX) or sent (TX), with no second miss. (The OS port holds the command
    after a TLB command until the TLB has applied it; without that, the retry looks up first and
    misses again, every round.)"""
    bench = Bench()
    seen = {}

    async def test(ctx):
        await bench.write_endpoint(ctx, 0)
        if engine == NiEngine.RX:
            await bench.deliver(ctx, arrival(notify=False))
            fill = window_fill()
        else:
            await bench.post(ctx, 0, descriptor_words(**SEND | dict(
                flags=SendFlags.DMA.value, local_va=DMA_VA, length=16)))
            fill = dict(op=TlbOp.FILL, asid=ASID, vpn=DMA_VA >> PAGE_BITS, ppn=0x300,
                        perm={"local_read": 1})
        await bench.wait_for(ctx, lambda: bench.taken["fault"], "the miss")
        await bench.os(ctx, NiOsOp.TLB, tlb=fill)
        if gap_cycles:
            await ctx.tick().repeat(gap_cycles)
        await bench.os(ctx, NiOsOp.MISS_ANSWER, engine=engine, reject=0)
        await ctx.tick().repeat(100)
        seen["tail"] = await bench.register(ctx, 0, UserReg.RING_TAIL)
        seen["status"] = await bench.register(ctx, 0, UserReg.STATUS)
        seen["counts"] = {name: bench.count(ctx, name)
                          for name in ("rx_delivered", "rx_misses", "tx_sent", "tx_misses")}

    bench.run(test)
    if engine == NiEngine.RX:
        assert bench.faults() == [fault(NiFaultKind.RX_MISS, endpoint=0, asid=ASID,
                                        va=REMOTE_VA, node=1)]
        assert seen["tail"] == 1 and bench.sent() == []
        assert seen["counts"] == {"rx_delivered": 1, "rx_misses": 1, "tx_sent": 0, "tx_misses": 0}
    else:
        assert bench.faults() == [fault(NiFaultKind.TX_MISS, endpoint=0, asid=ASID,
                                        va=DMA_VA & ~0xFFF)]
        assert seen["status"] == status(sent=1)
        assert [message.payload for message in bench.sent()] == [bytes(16)]
        assert seen["counts"] == {"rx_delivered": 0, "rx_misses": 0, "tx_sent": 1, "tx_misses": 1}


# OS commands naming an endpoint or context the NI does not have -----------------------------------

# The OS port's ``index`` is 4 bits wide; the Notifier's command index and the lock table's
# residency context are narrower: an index out of range must be ignored, not truncated.

@pytest.mark.parametrize("command", [
    "write-endpoint-3",
    "write-context-9",
    "write-context-2",
])
def test_os_commands_for_what_the_ni_lacks_change_nothing(command):
    """With 2 endpoints and 2 contexts: WRITE_ENDPOINT 3 leaves endpoint 1 armed; WRITE_CONTEXT 9
    or 2 makes no thread resident (as behavioral/refni.py: such commands change nothing)."""
    bench = Bench()
    seen = {}

    async def test(ctx):
        await set_up_receiver(bench, ctx, endpoint=1)
        if command == "write-endpoint-3":
            await bench.write_endpoint(ctx, 3, asid=OTHER_ASID)
        else:
            await bench.write_context(ctx, int(command[-1]), busy=1)
        seen["wait"] = await bench.lock(ctx, LockOp.WAIT, LOCK_VA)
        await bench.deliver(ctx, arrival(dst_endpoint=1))
        await bench.wait_for(ctx, lambda: bench.count(ctx, "rx_delivered") == 1, "delivery")
        await ctx.tick().repeat(20)
        seen["counts"] = {name: bench.count(ctx, f"notify_{name}") for name in ("none", "lock")}

    bench.run(test)
    assert seen["wait"] == LockStatus.BLOCKED
    assert seen["counts"] == {"none": 0, "lock": 1}, "endpoint 1 stays armed"
    assert bench.taken["lock_released"] == [], "no context holds the thread"
    assert bench.taken["lock_os"] == [not_resident()]


# Two processes: each endpoint in its own address space -------------------------------------------

#: Two processes, one endpoint each: (endpoint, ASID, PPN of REMOTE_VA, PPN of DMA_VA). They map
#: the same VAs, each to frames of its own.
PROCESSES = [(0, 1, 0x300, 0x310), (1, 2, 0x400, 0x410)]


async def set_up_processes(bench, ctx):
    """Give each process of :data:`PROCESSES` its endpoint (with a ring of its own), its receive
    window at REMOTE_VA (remote writes with KEY) and its page at DMA_VA (local reads)."""
    for endpoint, asid, window_ppn, dma_ppn in PROCESSES:
        await bench.write_endpoint(ctx, endpoint, asid=asid, ring_pa=RING_PA + 0x1000 * endpoint)
        await bench.os(ctx, NiOsOp.TLB, tlb=window_fill() | dict(asid=asid, ppn=window_ppn))
        await bench.os(ctx, NiOsOp.TLB, tlb=dict(op=TlbOp.FILL, asid=asid, ppn=dma_ppn,
                                                 vpn=DMA_VA >> PAGE_BITS, perm={"local_read": 1}))


def test_two_processes_receive_each_in_its_own_pages():
    """A message for each endpoint at the same REMOTE_VA: each lands in the frame its endpoint's
    process maps there, and nothing of it in the other process's frame. Neither process can read
    or move the other's ring: FOREIGN_ASID, and nothing changes."""
    bench = Bench()
    payloads = {endpoint: bytes([0xA0 + endpoint] * 8) for endpoint, *_ in PROCESSES}
    seen = {}

    async def test(ctx):
        await set_up_processes(bench, ctx)
        for endpoint, payload in payloads.items():
            await bench.deliver(ctx, arrival(dst_endpoint=endpoint, notify=False, payload=payload))
        await bench.wait_for(ctx, lambda: bench.count(ctx, "rx_delivered") == 2, "delivery")
        seen["foreign"] = [await bench.read(ctx, 1, UserReg.RING_TAIL, asid=1),
                           await bench.write(ctx, 0, UserReg.RING_HEAD, 1, asid=2)]
        seen["tails"] = [await bench.register(ctx, endpoint, UserReg.RING_TAIL, asid=asid)
                         for endpoint, asid, *_ in PROCESSES]
        seen["head"] = await bench.register(ctx, 0, UserReg.RING_HEAD, asid=1)
        seen["frames"] = {endpoint: await bench.probe(ctx, ppn << PAGE_BITS)
                          for endpoint, _, ppn, _ in PROCESSES}

    bench.run(test)
    assert seen["frames"] == {
        endpoint: [int.from_bytes(payload, "little")] + [0] * (LINE_WORDS - 1)
        for endpoint, payload in payloads.items()}
    assert seen["foreign"] == [(MmioStatus.FOREIGN_ASID, 0), MmioStatus.FOREIGN_ASID]
    assert seen["tails"] == [1, 1] and seen["head"] == 0
    assert bench.faults() == [
        fault(NiFaultKind.FOREIGN_ASID, endpoint=1, asid=1,
              va=1 << PAGE_BITS | UserReg.RING_TAIL.value),
        fault(NiFaultKind.FOREIGN_ASID, endpoint=0, asid=2, va=UserReg.RING_HEAD.value)]


def test_two_processes_send_each_from_its_own_pages():
    """A DMA send from DMA_VA on each endpoint reads the frame its endpoint's process maps there.
    The other process can neither rewrite a posted descriptor nor ring its doorbell: each write
    answers FOREIGN_ASID, and nothing is sent until the owner rings."""
    bench = Bench()
    words = descriptor_words(**SEND | dict(flags=SendFlags.DMA.value, local_va=DMA_VA, length=16))
    forged = [(8 * i, MASK64) for i in range(DESCRIPTOR_WORDS)] + [(UserReg.DOORBELL.value, 0)]
    seen = {}

    async def test(ctx):
        await set_up_processes(bench, ctx)
        await bench.post(ctx, 0, words, doorbell=False, asid=1)
        seen["forged"] = [await bench.write(ctx, 0, offset, word, asid=2)
                          for offset, word in forged]
        await ctx.tick().repeat(20)
        seen["sent before"] = len(bench.taken["link_tx"])
        await bench.post(ctx, 0, asid=1)                 # the doorbell of the descriptor above
        seen[0] = await bench.idle(ctx, 0, asid=1)
        await bench.post(ctx, 1, words, asid=2)
        seen[1] = await bench.idle(ctx, 1, asid=2)

    bench.run(test)
    assert seen["forged"] == [MmioStatus.FOREIGN_ASID] * len(forged)
    assert bench.faults() == [fault(NiFaultKind.FOREIGN_ASID, endpoint=0, asid=2, va=offset)
                              for offset, _ in forged]
    assert seen["sent before"] == 0
    assert seen[0] == seen[1] == status(sent=1)
    assert [codec(LineRequest).field(bits, "addr") for bits in bench.taken["dma_read"]] == [
        (ppn << PAGE_BITS | DMA_VA & ((1 << PAGE_BITS) - 1)) // LINE_BYTES
        for *_, ppn in PROCESSES]
    assert [(m.src_endpoint, m.seq, m.remote_va, m.payload) for m in bench.sent()] == [
        (endpoint, endpoint, SEND["remote_va"], bytes(16)) for endpoint, *_ in PROCESSES]


@pytest.mark.parametrize("tuned", [None, 1, 2, 5])
def test_tune_send_buffering_bounds_the_dma_lines_fetched_ahead(tuned):
    """With the link held, a DMA send of 1 KiB reads as many lines ahead as the OS tuned: the
    NI's send_buffering (4) untuned, or for a value above it; then it is sent whole."""
    bench = Bench(held={"link_tx"})
    words = descriptor_words(**SEND | dict(flags=SendFlags.DMA.value, local_va=DMA_VA,
                                           length=1024))
    seen = {}

    async def test(ctx):
        await set_up_processes(bench, ctx)
        if tuned is not None:
            await bench.os(ctx, NiOsOp.TUNE, index=NiTunable.SEND_BUFFERING.value, value=tuned)
        await bench.post(ctx, 0, words, asid=1)
        await ctx.tick().repeat(100)
        seen["lines"] = len(bench.taken["dma_read"])
        ctx.set(bench.dut.link_tx.ready, 1)
        # (a line at a time is slower than a line per 8 cycles)
        await ctx.tick().repeat(600)
        seen["status"] = await bench.idle(ctx, 0, asid=1)

    bench.run(test)
    assert seen["lines"] == {None: 4, 1: 1, 2: 2, 5: 4}[tuned]
    assert seen["status"] == status(sent=1)
    assert len(bench.taken["dma_read"]) == (DMA_VA % LINE_BYTES + 1024 - 1) // LINE_BYTES + 1
