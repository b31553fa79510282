"""The system scoreboard (:mod:`tb.system_scoreboard`) finds what a broken design would do.

Each test drives the scoreboard as the system testbench does, with the payloads the NIs take and
the flits the links carry, but without a simulator: node 0's process sends node 1's process one
PIO message, and a test breaks one step of its way (the Fabric changes or misroutes it, an NI
writes one entry too many, a read answers a value the register never held, a page where an
undelivered message would land changes) and expects a mismatch that says so.
"""


import pytest

from behavioral.memory import SparseMemory
from behavioral.scenario import PlannedMessage, Process, Scenario, Window
from behavioral.vm import Page
from behavioral.workload import MessageStatus
from rtl.layouts import (RX_COUNTERS, LinkFault, LinkFaultKind, MmioRequest, MmioStatus, NiOsOp,
                         NotifyMode, SendDescriptor, UserReg, codec, ni_os_command_layout)
from tb import system_scoreboard
from tb.system_scoreboard import LatencyRecorder, SystemScoreboard

ASID = 2
WINDOW_VA = 0x1000_0000
PPN = 0x400                     # node 1's frame for the window's first page
PAYLOAD = [0x11, 0x22, 0x33]


class FakeWorkload:
    """What the scoreboard reads of a :class:`behavioral.workload.Workload`."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.records = {message.id: {"id": message.id, "status": MessageStatus.PLANNED}
                        for message in scenario.messages}
        self.entries, self.strays, self.sending = {}, [], {}
        self.sent_memory = {node: SparseMemory() for node in range(scenario.nodes)}

    def stamp(self, message_id, name, when):
        self.records[message_id].setdefault(name, when)

    def asid(self, name):
        return ASID


def translate(asid, va):
    if asid == ASID and va >> 12 == WINDOW_VA >> 12:
        return Page(PPN, {"local_read": 1, "remote_write": 1}, 0)
    return None


@pytest.fixture
def board(monkeypatch):
    monkeypatch.setattr(system_scoreboard, "cycle", lambda: 0)
    window = Window(WINDOW_VA, 4096)
    processes = {name: Process(name, node, 0, NotifyMode.NONE, window, Window(0x2000_0000, 4096))
                 for node, name in enumerate(("a", "b"))}
    message = PlannedMessage(id=0, src="a", dst="b", bytes=8 * len(PAYLOAD), send="pio",
                             notify=False, va_offset=0, key=0)
    workload = FakeWorkload(Scenario(2, {}, processes, [message]))
    board = SystemScoreboard(workload, LatencyRecorder(workload), {0: translate, 1: translate},
                             {"endpoints": 2, "asid_bits": 4})
    os_codec = codec(ni_os_command_layout(4))
    for node in (0, 1):
        board.on_os_command(node, os_codec.pack(op=NiOsOp.WRITE_ENDPOINT, index=0, endpoint={
            "enabled": 1, "asid": ASID, "ring_log2": 3, "ring_pa": 0x20_0000,
            "ring_va": 0x7000_0000_0000}))
    return board


def mmio(board, node, reg, data=0, *, write=True, word=0):
    board.on_mmio(node, codec(MmioRequest).pack(write=write, asid=ASID,
                                                 addr=reg.value + 8 * word, data=data), 0)


def send(board):
    """Node 0 sends PAYLOAD to node 1; return the flits it puts on its link."""
    bits = codec(SendDescriptor).pack(dst_node=1, dst_endpoint=0, length=8 * len(PAYLOAD),
                                      remote_va=WINDOW_VA, metadata=0)
    for word in range(4):
        mmio(board, 0, UserReg.DESCRIPTOR, bits >> (64 * word) & (2**64 - 1), word=word)
    for word, value in enumerate(PAYLOAD):
        mmio(board, 0, UserReg.PAYLOAD, value, word=word)
    mmio(board, 0, UserReg.DOORBELL)
    for _ in range(4 + len(PAYLOAD) + 1):
        board.on_mmio_answer(0, MmioStatus.OK)
    message = board._predicted[(0, 0)][0]
    flits = message.flits()
    board.on_sent(0, flits, 10, 10 + len(flits))
    return flits


def deliver(board, flits, node=1):
    board.on_fabric_out(node, flits, 20, 20 + len(flits))
    board.on_arrived(node, flits, 20, 20 + len(flits))


def test_a_message_delivered_as_sent_leaves_nothing_over(board):
    deliver(board, send(board))
    board.check_end({0: 0, 1: 1}, 0)
    assert board.mismatches == []
    assert board.expected_memory[1][PPN << 12] == PAYLOAD[0]


def test_a_message_the_fabric_changes_is_a_mismatch(board):
    flits = send(board)
    data, last = flits[4]
    deliver(board, flits[:4] + [(data ^ 1 << 9, last)] + flits[5:])
    assert "which no node sent it" in board.mismatches[0]


def test_a_message_the_fabric_misroutes_is_a_mismatch(board):
    deliver(board, send(board), node=0)
    assert "the Fabric gave node 0" in board.mismatches[0]


def test_a_message_the_fabric_keeps_is_left_over(board):
    send(board)
    board.check_end({0: 0, 1: 0}, 0)
    assert any("1 messages in the Fabric, never given out" in text
               for text in board.mismatches)


def test_a_completion_entry_too_many_is_a_mismatch(board):
    deliver(board, send(board))
    board.check_end({0: 0, 1: 2}, 0)
    assert board.mismatches == ["cycle 0: node 1's NI wrote 2 completion entries, the model "
                                "says 1"]


@pytest.mark.parametrize("now, late", [(1000, False), (1001, True)])
def test_an_access_not_answered_in_time_is_left_over(board, monkeypatch, now, late):
    mmio(board, 0, UserReg.RING_HEAD, 1)            # taken at edge 0
    monkeypatch.setattr(system_scoreboard, "cycle", lambda: now)
    board.check_end({0: 0, 1: 0}, 0)
    assert any("1 MMIO accesses not answered 1000 cycles after they were taken" in text
               for text in board.mismatches) == late


def test_a_read_answers_a_value_the_register_held_since_the_last_read(board):
    deliver(board, send(board))
    mmio(board, 1, UserReg.RING_TAIL, write=False)
    board.on_mmio_answer(1, MmioStatus.OK, 0)       # the NI has not written the entry yet
    mmio(board, 1, UserReg.RING_TAIL, write=False)
    board.on_mmio_answer(1, MmioStatus.OK, 1)
    assert board.mismatches == []
    mmio(board, 1, UserReg.RING_TAIL, write=False)
    board.on_mmio_answer(1, MmioStatus.OK, 0)       # back again
    mmio(board, 1, UserReg.RING_TAIL, write=False)
    board.on_mmio_answer(1, MmioStatus.OK, 5)       # never
    assert len(board.mismatches) == 2
    assert "read RING_TAIL: 0x0; since the last read the model held ['0x1']" in \
        board.mismatches[0]


def test_a_read_that_is_refused_answers_zero(board):
    mmio(board, 1, UserReg.DESCRIPTOR, write=False)
    board.on_mmio_answer(1, MmioStatus.BAD_ADDRESS, 0x99)
    assert "a read that is not OK answers 0" in board.mismatches[0]


def test_a_refusal_the_model_did_not_predict_is_a_mismatch(board):
    deliver(board, send(board))
    board.records[0]["status"] = MessageStatus.REFUSED_BAD_NODE
    board.check_end({0: 0, 1: 1}, 0)
    assert "refused with BAD_NODE, the model says sent" in board.mismatches[0]


@pytest.mark.parametrize("stray", [None, PPN << 12 | 0x800])
def test_the_page_of_a_message_not_delivered_is_read_back_whole(board, stray):
    import asyncio
    board.records[0]["status"] = MessageStatus.DISCARDED_BAD_CRC
    loaded = []

    async def load(node, pa):
        loaded.append((node, pa))
        return 0xBAD if pa == stray else 0
    asyncio.run(board.check_landing(load))
    assert loaded == [(1, PPN << 12 | 8 * index) for index in range(512)]
    assert len(board.mismatches) == (stray is not None)


def test_a_discard_the_rx_engine_does_not_count_is_a_mismatch(board):
    flits = send(board)
    data, last = flits[4]
    damaged = flits[:4] + [(data ^ 1 << 9, last)] + flits[5:]
    board.on_link_fault(1, codec(LinkFault).pack(kind=LinkFaultKind.CORRUPT, flit=4, bit=9), 20)
    board.on_fabric_out(1, flits, 20, 20 + len(flits))
    board.on_arrived(1, damaged, 20, 20 + len(flits))
    counters = dict.fromkeys(RX_COUNTERS, 0)
    board.check_end({0: 0, 1: 0}, 0, {0: counters, 1: counters})
    assert board.mismatches == ["cycle 0: node 1's RX engine counted 0 bad_crc, the model 1",
                                "cycle 0: node 1 faults {}, the model says "
                                "{(<NiFaultKind.BAD_CRC: 6>, 0, 0): 1}"]
    assert board.records[0]["status"] is MessageStatus.DISCARDED_BAD_CRC


def lock_scenario():
    window = Window(WINDOW_VA, 4096)
    processes = {"a": Process("a", 0, 0, NotifyMode.NONE, window, Window(0x2000_0000, 4096)),
                 "b": Process("b", 1, 0, NotifyMode.LOCK, window, Window(0x2000_0000, 4096))}
    messages = [PlannedMessage(id=index, src="a", dst="b", bytes=8, send="pio", notify=True,
                               va_offset=0, key=0) for index in range(2)]
    return Scenario(2, {}, processes, messages)


def test_a_release_notifies_one_message_before_its_handler():
    """Message 0's thread WAITed after its lock was signalled: no release is its; the release at
    cycle 300 is message 1's, whose handler follows it."""
    workload = FakeWorkload(lock_scenario())
    recorder = LatencyRecorder(workload)
    workload.records[0].update(to="b", t_last_flit_in=90, t_completion=100, t_handler=150)
    workload.records[1].update(to="b", t_last_flit_in=290, t_completion=295, t_handler=310)
    recorder.on_event(1, "released", {}, 300)
    recorder.finish(workload.scenario, pytest.fail)
    assert "t_notified" not in workload.records[0]
    assert workload.records[1]["t_notified"] == 300
