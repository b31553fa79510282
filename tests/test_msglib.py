"""The message library (:mod:`behavioral.msglib`), driven by hand against a reference NI.

A test runs a library generator as a thread would, answering each operation itself: MMIO
accesses go to a :class:`behavioral.refni.ReferenceNI` (a write answers its status, a read its
value, as :class:`behavioral.core.SMTCore` passes them on), loads to a
:class:`behavioral.memory.SparseMemory`.
"""

import pytest

from behavioral.core import Load, MmioRead, MmioWrite, Wait
from behavioral.memory import SparseMemory
from behavioral.message import Message
from behavioral.msglib import MmioError, Receiver, arm, register, send, wait_lock
from behavioral.refni import ReferenceNI, RxResult
from behavioral.vm import Ring
from rtl.layouts import (COMPLETION_BYTES, CompletionStatus, LockStatus, NiOsOp, NotifyMode,
                         SendDescriptor, SendFlags, TlbOp, TxError, UserReg, codec)

ASID = 2
RING = Ring(va=0x7000_0000_0000, pa=0x0030_0000, entries=4)
VA = 0x1000_0000
PPN = 0x400


def open_endpoint(ni, index):
    ni.os_command(op=NiOsOp.WRITE_ENDPOINT, index=index, endpoint={
        "enabled": 1, "asid": ASID, "thread": 1, "ring_log2": 2, "ring_pa": RING.pa,
        "ring_va": RING.va})


def drive(thread, ni, *, memory=None, before=lambda op: None):
    """Run ``thread`` to its end; return (its result, the operations it yielded).

    ``before(op)`` runs before each operation is answered: where a test lets the NI's engines
    move."""
    ops, answer = [], None
    while True:
        try:
            op = thread.send(answer)
        except StopIteration as stop:
            return stop.value, ops
        ops.append(op)
        before(op)
        if isinstance(op, MmioWrite):
            answer = ni.mmio(True, ASID, op.addr, op.value)[0].value
        elif isinstance(op, MmioRead):
            answer = ni.mmio(False, ASID, op.addr)[1]
        elif isinstance(op, Load):
            answer = memory.read_word(op.addr)
        else:
            raise AssertionError(f"unexpected operation {op!r}")


def sends_on_second_status_read(ni, memory_read, sent):
    """Return a ``before`` hook letting the TX engine take the send at the second STATUS read,
    so that the library sees the send busy once."""
    reads = []

    def before(op):
        if op == MmioRead(register(1, UserReg.STATUS)):
            reads.append(op)
            if len(reads) == 2:
                sent.append(ni.send_next(memory_read))
    return before


@pytest.fixture
def ni():
    ni = ReferenceNI(0)
    open_endpoint(ni, 1)
    return ni


def test_register_addresses():
    assert register(3, UserReg.DOORBELL) == 0x3020
    assert register(1, UserReg.PAYLOAD, 5) == 0x1828
    assert register(0, UserReg.DESCRIPTOR, 3) == 0x0018


def test_pio_send_produces_the_message(ni):
    sent = []
    error, ops = drive(send(1, dst_node=1, dst_endpoint=4, remote_va=0x2000, key=7, metadata=99,
                            notify=True, payload=[0xAA, 0xBB]), ni,
                       before=sends_on_second_status_read(ni, None, sent))
    assert error is TxError.NONE
    assert sent[0].message == Message(
        dst_node=1, src_node=0, dst_endpoint=4, src_endpoint=1, notify=True, seq=0, key=7,
        remote_va=0x2000, metadata=99,
        payload=(0xAA).to_bytes(8, "little") + (0xBB).to_bytes(8, "little"))
    bits = codec(SendDescriptor).pack(dst_node=1, dst_endpoint=4, flags=SendFlags.NOTIFY.value,
                                      length=16, key=7, remote_va=0x2000, metadata=99)
    assert ops == [
        *(MmioWrite(register(1, UserReg.DESCRIPTOR, i), bits >> (64 * i) & (2**64 - 1))
          for i in range(4)),
        MmioWrite(register(1, UserReg.PAYLOAD, 0), 0xAA),
        MmioWrite(register(1, UserReg.PAYLOAD, 1), 0xBB),
        MmioWrite(register(1, UserReg.DOORBELL), 0),
        MmioRead(register(1, UserReg.STATUS)), MmioRead(register(1, UserReg.STATUS)),
    ]


def test_dma_send(ni):
    ni.os_command(op=NiOsOp.TLB, tlb={"op": TlbOp.FILL, "asid": ASID, "vpn": VA >> 12,
                                      "ppn": PPN, "perm": {"local_read": 1}})
    memory = SparseMemory()
    memory.write_word(PPN << 12 | 0x10, 0x1234)
    sent = []
    error, ops = drive(send(1, dst_node=1, dst_endpoint=0, dma=True, local_va=VA + 0x10,
                            length=8), ni,
                       before=sends_on_second_status_read(ni, memory.read_word, sent))
    assert error is TxError.NONE
    assert sent[0].message.payload == (0x1234).to_bytes(8, "little")
    assert not any(op.addr >= register(1, UserReg.PAYLOAD) for op in ops)


def test_while_busy_runs_between_status_reads(ni):
    """The caller's code runs once per STATUS read that finds the send under way, and not after
    the one that finds it done."""
    sent, runs = [], []

    def while_busy():
        runs.append(len(sent))
        yield MmioRead(register(1, UserReg.RING_TAIL))

    error, ops = drive(send(1, dst_node=1, dst_endpoint=0, payload=[1], while_busy=while_busy),
                       ni, before=sends_on_second_status_read(ni, None, sent))
    assert error is TxError.NONE and runs == [0]
    assert ops[-3:] == [MmioRead(register(1, UserReg.STATUS)),
                        MmioRead(register(1, UserReg.RING_TAIL)),
                        MmioRead(register(1, UserReg.STATUS))]


def test_refused_send_returns_the_error(ni):
    sent = []
    error, _ = drive(send(1, dst_node=1, dst_endpoint=0, payload=[1], length=12), ni,
                     before=sends_on_second_status_read(ni, None, sent))
    assert error is TxError.BAD_LENGTH and sent[0].message is None


def test_refused_write_raises_in_the_thread(ni):
    thread = send(2, dst_node=1, dst_endpoint=0, payload=[1])        # endpoint 2 is not open
    with pytest.raises(MmioError, match=r"to 0x2000 answered BAD_ADDRESS; check that the"):
        drive(thread, ni)


@pytest.mark.parametrize("kwargs, text", [
    ({"dma": True, "payload": [1], "length": 8}, "drop the 1 payload words"),
    ({"dma": True}, "needs its length in bytes"),
    ({"payload": [0] * 257}, "257 payload words exceed the 256"),
    ({"payload": [-1]}, "payload word -1 must be an integer"),
    ({"key": 1 << 16}, "field 'key' is 16 bits wide"),
])
def test_bad_send_arguments_fail_at_the_call(kwargs, text):
    with pytest.raises(ValueError, match=text):
        send(1, dst_node=1, dst_endpoint=0, **kwargs)


def test_arm_writes_the_notifier_entry(ni):
    result, ops = drive(arm(1, NotifyMode.BRANCH, handler=0x4000, lock=0x5000), ni)
    assert result is None
    assert ops[-1] == MmioWrite(register(1, UserReg.ARM_MODE), NotifyMode.BRANCH.value)
    assert ni.notifier.endpoint(1) == {"mode": NotifyMode.BRANCH, "asid": ASID, "thread": 1,
                                       "lock": 0x5000, "handler_pc": 0x4000, "stack": 0}


def test_wait_lock():
    thread = wait_lock(0x5000)
    assert next(thread) == Wait(0x5000)
    with pytest.raises(StopIteration) as stop:
        thread.send(LockStatus.GRANTED.value)
    assert stop.value.value == LockStatus.GRANTED.value


def deliver(ni, memory, seq):
    """Receive a message with no payload on endpoint 1 of ``ni`` and apply it to memory."""
    outcome = ni.receive(Message(dst_node=0, src_node=1, dst_endpoint=1, src_endpoint=3,
                                 seq=seq, metadata=0x77 + seq))
    assert outcome.result is RxResult.DELIVERED
    outcome.apply(memory)
    return outcome


def test_poll_and_consume_around_the_ring(ni):
    memory = SparseMemory()
    receiver = Receiver(1, RING)
    tails = []

    def arrive_at_second_poll(op):
        if op == MmioRead(register(1, UserReg.RING_TAIL)):
            tails.append(op)
            if len(tails) == 2:
                deliver(ni, memory, seq)

    for seq in range(6):            # past the four entries of the ring
        tails.clear()
        tail, ops = drive(receiver.poll(), ni, before=arrive_at_second_poll)
        assert (tail, len(ops)) == (seq + 1, 2)
        entry, ops = drive(receiver.consume(), ni, memory=memory)
        slot = RING.pa + COMPLETION_BYTES * (seq % 4)
        assert ops[:4] == [Load(slot + 8 * i) for i in range(4)]
        assert ops[4] == MmioWrite(register(1, UserReg.RING_HEAD), seq + 1)
        assert entry["status"] is CompletionStatus.DELIVERED
        assert (entry["src_node"], entry["src_endpoint"], entry["seq"], entry["metadata"]) == (
            1, 3, seq, 0x77 + seq)
        assert receiver.head == seq + 1 and ni.ring(1) == (seq + 1, seq + 1)


def test_receiver_head_wraps_at_2_16(ni):
    receiver = Receiver(1, RING, head=0xFFFF)
    memory = SparseMemory()
    drive(receiver.consume(), ni, memory=memory)
    assert receiver.head == 0 and ni.ring(1)[0] == 0


def test_receiver_arguments():
    with pytest.raises(ValueError, match="head 65536 must be an integer 0 .. 65535"):
        Receiver(1, RING, head=1 << 16)
