"""The OS's address spaces and NI driver (:mod:`behavioral.vm`).

The driver's commands go to a fake ``os`` port that packs every one through
:func:`rtl.layouts.ni_os_command_layout`'s codec, so each test also proves that what the driver
sends fits the hardware's command format. Time passes on a real :class:`SMTCore`'s timers.
"""

import re

import pytest

from behavioral.core import Compute, SMTCore
from behavioral.os import OS
from behavioral.vm import (PAGE_BYTES, RING_VA_BASE, AddressSpaces, NiDriver, OutOfFrames, Page,
                           Ring)
from rtl.layouts import (COMPLETION_BYTES, NiEngine, NiFaultKind, NiOsOp, TlbOp, codec,
                         ni_os_command_layout)

BASE_PA = 0x0010_0000
BASE_PPN = BASE_PA // PAGE_BYTES
READ_ONLY = {"local_read": 1, "remote_write": 0}
WINDOW = {"local_read": 1, "remote_write": 1}


class Port:
    """A fake ``os`` port: records each command's fields and its packed value."""

    def __init__(self, asid_bits=8):
        self.codec = codec(ni_os_command_layout(asid_bits))
        self.commands = []

    def command(self, **fields):
        self.codec.pack(**fields)          # raises if a field is unknown or does not fit
        self.commands.append(fields)

    def take(self):
        commands, self.commands = self.commands, []
        return commands


def fill(asid, vpn, ppn, perm, key=0):
    return {"op": NiOsOp.TLB, "tlb": {"op": TlbOp.FILL, "asid": asid, "vpn": vpn, "ppn": ppn,
                                      "perm": perm, "key": key}}


def invalidate(asid, vpn):
    return {"op": NiOsOp.TLB, "tlb": {"op": TlbOp.INVALIDATE, "asid": asid, "vpn": vpn}}


def answer(engine, reject):
    return {"op": NiOsOp.MISS_ANSWER, "engine": engine, "reject": reject}


def miss(kind, asid, va, endpoint=0):
    return {"kind": kind, "endpoint": endpoint, "asid": asid, "va": va, "node": 0}


def one_line_error(kind, text, call):
    with pytest.raises(kind, match=re.escape(text)) as info:
        call()
    assert "\n" not in str(info.value)


class Node:
    """A core for time, address spaces with one process, and a driver on a fake port."""

    def __init__(self, miss_cycles=1000, **spaces):
        self.core = SMTCore(contexts=2)
        self.spaces = AddressSpaces(**spaces)
        self.asid = self.spaces.create_process("app")
        self.port = Port()
        self.driver = NiDriver(self.port, self.spaces, later=self.core.after,
                               miss_cycles=miss_cycles)


# Address spaces: parameters, frames, ASIDs -------------------------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    (dict(memory_bytes=0x1800), "memory_bytes 0x1800 must be a whole number of 4096-byte pages"),
    (dict(memory_bytes=1 << 33), f"memory_bytes {1 << 33} must be an integer 4096 .. {1 << 32}"),
    (dict(base_pa=0), "base_pa 0 must be an integer 4096 .. "),
    (dict(base_pa=0x1800), "base_pa 0x1800 must be page aligned"),
    (dict(memory_bytes=BASE_PA), f"base_pa {BASE_PA} must be an integer 4096 .. "),
    (dict(asid_bits=9), "asid_bits 9 must be an integer 1 .. 8"),
])
def test_bad_parameters_are_named(kwargs, error):
    one_line_error(ValueError, error, lambda: AddressSpaces(**kwargs))


def test_frames_come_from_base_pa_up_and_return_when_unmapped():
    spaces = AddressSpaces(memory_bytes=BASE_PA + 8 * PAGE_BYTES)
    asid = spaces.create_process("app")
    assert spaces.free_frames == 8
    spaces.map(asid, 0x40_0000, 3 * PAGE_BYTES)
    assert [spaces.lookup(asid, 0x40_0000 + i * PAGE_BYTES).ppn for i in range(3)] == \
        [BASE_PPN, BASE_PPN + 1, BASE_PPN + 2]
    assert spaces.free_frames == 5
    spaces.unmap(asid, 0x40_1000, 1)
    spaces.map(asid, 0x90_0000, 1)                 # the lowest free frame: the one just freed
    assert spaces.translate(asid, 0x90_0000) == BASE_PA + PAGE_BYTES


def test_out_of_frames_changes_nothing():
    spaces = AddressSpaces(memory_bytes=4 * PAGE_BYTES, base_pa=PAGE_BYTES)
    asid = spaces.create_process("app")
    one_line_error(OutOfFrames, "4 frames needed, 3 free; unmap something or raise memory_bytes",
                   lambda: spaces.map(asid, 0, 4 * PAGE_BYTES))
    assert spaces.free_frames == 3 and spaces.lookup(asid, 0) is None
    # Three free frames, but not two in a row: a ring of two pages does not fit.
    spaces.map(asid, 0, 3 * PAGE_BYTES)
    spaces.unmap(asid, 0, 1)
    spaces.unmap(asid, 2 * PAGE_BYTES, 1)
    one_line_error(OutOfFrames, "no 2 contiguous free frames in physical memory (2 free)",
                   lambda: spaces.map_ring(asid, 2 * PAGE_BYTES // COMPLETION_BYTES))


def test_asids_count_from_one_and_names_are_unique():
    spaces = AddressSpaces(asid_bits=2)
    assert [spaces.create_process(name) for name in "abc"] == [1, 2, 3]
    assert spaces.processes == {1: "a", 2: "b", 3: "c"} and spaces.asid_of("b") == 2
    one_line_error(ValueError, "a process named 'a' exists already (ASID 1); pick another name",
                   lambda: spaces.create_process("a"))
    one_line_error(RuntimeError, "all 3 ASIDs of asid_bits 2 are in use; no room for process 'd'",
                   lambda: spaces.create_process("d"))
    one_line_error(LookupError, "no process is named 'd'", lambda: spaces.asid_of("d"))


# Address spaces: page tables ---------------------------------------------------------------------

def test_map_covers_every_page_touched_and_translates_offsets():
    spaces = AddressSpaces()
    asid = spaces.create_process("app")
    spaces.map(asid, 0x1ff8, 16)                   # 8 bytes in each of two pages
    assert spaces.translate(asid, 0x1ff8) == BASE_PA + 0xff8
    assert spaces.translate(asid, 0x2007) == BASE_PA + PAGE_BYTES + 7
    ppn, perm, key = spaces.lookup(asid, 0x2000)
    assert (ppn, perm, key) == (BASE_PPN + 1, READ_ONLY, 0)
    assert spaces.lookup(asid, 0x3000) is None
    one_line_error(LookupError, "VA 0x3000 is not mapped in ASID 1 ('app'); map it first",
                   lambda: spaces.translate(asid, 0x3000))


def test_address_spaces_are_separate():
    spaces = AddressSpaces()
    first, second = spaces.create_process("a"), spaces.create_process("b")
    spaces.map(first, 0x1000, 1)
    spaces.map(second, 0x1000, 1)
    assert spaces.translate(first, 0x1000) != spaces.translate(second, 0x1000)
    spaces.unmap(first, 0x1000, 1)
    assert spaces.lookup(second, 0x1000) is not None


def test_lookup_returns_a_copy():
    spaces = AddressSpaces()
    asid = spaces.create_process("app")
    spaces.map(asid, 0, 1)
    spaces.lookup(asid, 0).perm["remote_write"] = 1
    assert spaces.lookup(asid, 0) == Page(BASE_PPN, READ_ONLY, 0)


def test_windows_are_remotely_writable_with_their_key():
    spaces = AddressSpaces()
    asid = spaces.create_process("app")
    spaces.register_window(asid, 0x10_0000, 2 * PAGE_BYTES, key=0xbeef)
    assert spaces.lookup(asid, 0x10_1fff) == Page(BASE_PPN + 1, WINDOW, 0xbeef)
    spaces.map(asid, 0x20_0000, 1, local_read=False, remote_write=True, key=3)
    assert spaces.lookup(asid, 0x20_0000).perm == {"local_read": 0, "remote_write": 1}


@pytest.mark.parametrize("call, kind, error", [
    (lambda s: s.map(9, 0, 1), ValueError,
     "ASID 9 is no process (the ASIDs are [1]); create_process first"),
    (lambda s: s.map(1, 0x5000, 1), ValueError, "page 0x5000 is mapped already in ASID 1"),
    (lambda s: s.map(1, 0x4ff0, 0x20), ValueError, "page 0x5000 is mapped already in ASID 1"),
    (lambda s: s.map(1, 0, 0), ValueError, "nbytes 0 must be an integer 1 .. "),
    (lambda s: s.map(1, -8, 8), ValueError, "va -8 must be an integer 0 .. "),
    (lambda s: s.map(1, RING_VA_BASE - 8, 16), ValueError,
     "nbytes 16 must be an integer 1 .. 8"),
    (lambda s: s.map(1, RING_VA_BASE, 8), ValueError,
     f"va {RING_VA_BASE} must be an integer 0 .. {RING_VA_BASE - 1}"),
    (lambda s: s.register_window(1, 0, 8, key=1 << 16), ValueError,
     "key 65536 must be an integer 0 .. 65535"),
    (lambda s: s.unmap(1, 0x5000, 0x1001), LookupError,
     "page 0x6000 of the range 0x5000 + 0x1001 is not mapped in ASID 1; nothing was unmapped"),
    (lambda s: s.lookup(1, 1 << 48), ValueError, "va 281474976710656 must be an integer 0 .. "),
])
def test_bad_mappings_are_named_and_change_nothing(call, kind, error):
    spaces = AddressSpaces()
    asid = spaces.create_process("app")
    spaces.map(asid, 0x5000, 1)
    free = spaces.free_frames
    one_line_error(kind, error, lambda: call(spaces))
    assert spaces.free_frames == free and spaces.translate(asid, 0x5000) == BASE_PA
    assert spaces.lookup(asid, 0x4000) is None and spaces.lookup(asid, 0x6000) is None


def test_unmap_returns_one_invalidate_per_page():
    spaces = AddressSpaces()
    asid = spaces.create_process("app")
    spaces.map(asid, 0x7000, 3 * PAGE_BYTES)
    assert spaces.unmap(asid, 0x7ff8, PAGE_BYTES) == [invalidate(asid, 7), invalidate(asid, 8)]
    assert spaces.lookup(asid, 0x7000) is None and spaces.lookup(asid, 0x9000) is not None
    assert spaces.free_frames == (1 << 20) - BASE_PPN - 1


@pytest.mark.parametrize("entries", [1, 16, 128, 256, 1 << 15])
def test_rings_are_contiguous_aligned_and_placed_in_the_ring_region(entries):
    spaces = AddressSpaces()
    asid = spaces.create_process("app")
    spaces.map(asid, 0, 1)                           # so the ring does not start at base_pa
    first, second = spaces.map_ring(asid, entries), spaces.map_ring(asid, entries)
    pages = -(-entries * COMPLETION_BYTES // PAGE_BYTES)
    assert first == Ring(RING_VA_BASE, BASE_PA + PAGE_BYTES, entries)
    assert second.va == RING_VA_BASE + pages * PAGE_BYTES and second.pa == first.pa + \
        pages * PAGE_BYTES
    for ring in (first, second):
        assert ring.pa % PAGE_BYTES == 0 and ring.nbytes == entries * COMPLETION_BYTES
        for offset in range(0, ring.nbytes, PAGE_BYTES):
            assert spaces.translate(asid, ring.va + offset) == ring.pa + offset
            assert spaces.lookup(asid, ring.va + offset).perm == \
                {"local_read": 0, "remote_write": 0}


@pytest.mark.parametrize("entries", [0, 3, 24, 1 << 16, True, 2.0])
def test_bad_ring_sizes_are_named(entries):
    spaces = AddressSpaces()
    asid = spaces.create_process("app")
    one_line_error(ValueError, f"ring entries {entries!r} must be a power of two, 1 to 32768",
                   lambda: spaces.map_ring(asid, entries))


# NI driver: endpoints and contexts ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs, kind, error", [
    (dict(port=object()), TypeError, "has no command(**fields) method"),
    (dict(spaces={}), TypeError, "spaces {} must be an AddressSpaces"),
    (dict(later=5), TypeError, "later 5 must be callable as later(delay_cycles, callback)"),
    (dict(miss_cycles=-1), ValueError, "miss_cycles -1 must be an integer >= 0"),
    (dict(endpoints=17), ValueError, "endpoints 17 must be an integer 1 .. 16"),
    (dict(contexts=0), ValueError, "contexts 0 must be an integer 1 .. 8"),
])
def test_bad_driver_parameters_are_named(kwargs, kind, error):
    arguments = {"port": Port(), "spaces": AddressSpaces(), "later": SMTCore().after, **kwargs}
    one_line_error(kind, error, lambda: NiDriver(arguments.pop("port"), arguments.pop("spaces"),
                                                 **arguments))


def test_open_endpoint_allocates_a_ring_and_writes_the_entry():
    node = Node()
    ring = node.driver.open_endpoint(3, node.asid, thread=7, ring_entries=64)
    assert ring == Ring(RING_VA_BASE, BASE_PA, 64) and node.driver.ring(3) == ring
    [command] = node.port.take()
    entry = {"enabled": 1, "asid": node.asid, "thread": 7, "ring_log2": 6, "ring_pa": BASE_PA,
             "ring_va": RING_VA_BASE}
    assert command == {"op": NiOsOp.WRITE_ENDPOINT, "index": 3, "endpoint": entry}
    unpacked = node.port.codec.unpack(node.port.codec.pack(**command))
    assert unpacked["op"] is NiOsOp.WRITE_ENDPOINT and unpacked["index"] == 3
    assert unpacked["endpoint"] == entry


def test_close_endpoint_disables_it_then_frees_its_ring():
    node = Node()
    ring = node.driver.open_endpoint(0, node.asid, thread=1, ring_entries=256)   # two pages
    free = node.spaces.free_frames
    node.port.take()
    node.driver.close_endpoint(0)
    assert node.port.take() == [
        {"op": NiOsOp.WRITE_ENDPOINT, "index": 0, "endpoint": {"enabled": 0}},
        invalidate(node.asid, ring.va >> 12), invalidate(node.asid, (ring.va >> 12) + 1)]
    assert node.spaces.free_frames == free + 2 and node.driver.ring(0) is None
    assert node.driver.open_endpoint(0, node.asid, thread=1).va == ring.va + 2 * PAGE_BYTES


@pytest.mark.parametrize("call, error", [
    (lambda d: d.open_endpoint(8, 1, 0), "endpoint 8 must be an integer 0 .. 7"),
    (lambda d: d.open_endpoint(2, 1, 0), "endpoint 2 is open already (ASID 1); close_endpoint "
                                         "first"),
    (lambda d: d.open_endpoint(3, 1, 256), "thread 256 must be an integer 0 .. 255"),
    (lambda d: d.open_endpoint(3, 5, 0), "ASID 5 is no process"),
    (lambda d: d.open_endpoint(3, 1, 0, ring_entries=5), "ring entries 5 must be a power of two"),
    (lambda d: d.close_endpoint(4), "endpoint 4 is not open; the open endpoints are [2]"),
    (lambda d: d.write_context(4, 1, 0, 1), "context 4 must be an integer 0 .. 3"),
    (lambda d: d.write_context(0, 1, 0, -1), "thread -1 must be an integer 0 .. 255"),
])
def test_bad_driver_calls_are_named_and_send_nothing(call, error):
    node = Node()
    node.driver.open_endpoint(2, node.asid, thread=0)
    node.port.take()
    free = node.spaces.free_frames
    one_line_error(ValueError, error, lambda: call(node.driver))
    assert node.port.commands == [] and node.spaces.free_frames == free


def test_residency_reaches_the_ni_as_write_context():
    core = SMTCore(contexts=2)
    os = OS(core, switch_cycles=5, deliver_cycles=7, spawn_cycles=9, tick_cycles=100)
    port = Port()
    driver = NiDriver(port, AddressSpaces(), later=core.after, contexts=2)
    os.on_residency(driver.residency)

    def work():
        yield Compute(4)

    thread = os.create_thread(9, 1, work(), evictable=True)
    core.run_until(lambda: thread.exited, 100)
    assert port.take() == [
        {"op": NiOsOp.WRITE_CONTEXT, "index": 0,
         "context": {"busy": 1, "evictable": 1, "thread": 9}},
        {"op": NiOsOp.WRITE_CONTEXT, "index": 0,
         "context": {"busy": 0, "evictable": 0, "thread": 0}}]


# NI driver: TLB misses and other faults ----------------------------------------------------------

def test_a_mapped_miss_is_filled_then_retried_after_miss_cycles():
    node = Node(miss_cycles=1000)
    node.spaces.register_window(node.asid, 0x5_0000, 64, key=0x42)
    node.driver.fault(miss(NiFaultKind.RX_MISS, node.asid, 0x5_0000 + 8))
    node.core.run(1000)
    assert node.port.commands == []
    node.core.run(1)
    assert node.port.take() == [fill(node.asid, 0x50, BASE_PPN, WINDOW, key=0x42),
                                answer(NiEngine.RX, 0)]
    assert node.driver.counters == {"fills": 1, "retries": 1, "rejects": 0}
    assert node.driver.faults == {NiFaultKind.RX_MISS: 1} and node.driver.log == []


def test_the_fill_carries_the_page_whatever_access_missed():
    node = Node(miss_cycles=0)
    node.spaces.map(node.asid, 0x6000, 8)            # read only: the NI refuses the write itself
    node.driver.fault(miss(NiFaultKind.TX_MISS, node.asid, 0x6000))
    node.core.run(1)
    assert node.port.take() == [fill(node.asid, 6, BASE_PPN, READ_ONLY), answer(NiEngine.TX, 0)]


@pytest.mark.parametrize("asid", [1, 0, 200])
def test_an_unmapped_miss_or_unknown_asid_is_rejected(asid):
    node = Node(miss_cycles=10)
    node.driver.fault(miss(NiFaultKind.TX_MISS, asid, 0x1234_5000))
    node.core.run(11)
    assert node.port.take() == [answer(NiEngine.TX, 1)]
    assert node.driver.counters == {"fills": 0, "retries": 0, "rejects": 1}


def test_misses_are_answered_one_at_a_time_in_order():
    node = Node(miss_cycles=100)
    node.spaces.map(node.asid, 0x1000, 1)
    node.driver.fault(miss(NiFaultKind.RX_MISS, node.asid, 0x1000))
    node.driver.fault(miss(NiFaultKind.TX_MISS, node.asid, 0x2000))
    node.driver.fault(miss(NiFaultKind.TX_MISS, node.asid, 0x1000))
    answers = []
    for _ in range(3):
        node.core.run_until(lambda: node.port.commands, 1000)
        answers.append((node.core.cycle - 1, node.port.take()))
    filled = fill(node.asid, 1, BASE_PPN, READ_ONLY)
    assert answers == [(100, [filled, answer(NiEngine.RX, 0)]),
                       (200, [answer(NiEngine.TX, 1)]),
                       (300, [filled, answer(NiEngine.TX, 0)])]
    node.driver.fault(miss(NiFaultKind.RX_MISS, node.asid, 0x1000))     # idle again: 100 cycles
    node.core.run(100)
    assert node.port.commands == []
    node.core.run(1)
    assert node.port.take() == [filled, answer(NiEngine.RX, 0)]


def test_the_page_table_is_read_when_the_miss_is_answered():
    node = Node(miss_cycles=50)
    node.spaces.map(node.asid, 0x3000, 1)
    node.driver.fault(miss(NiFaultKind.RX_MISS, node.asid, 0x3000))
    node.core.run(10)
    node.driver.unmap(node.asid, 0x3000, 1)
    assert node.port.take() == [invalidate(node.asid, 3)]
    node.core.run(50)
    assert node.port.take() == [answer(NiEngine.RX, 1)]         # no stale fill after the invalidate


@pytest.mark.parametrize("kind", [kind for kind in NiFaultKind
                                  if kind not in (NiFaultKind.TX_MISS, NiFaultKind.RX_MISS)])
def test_other_faults_are_counted_and_logged(kind):
    node = Node(miss_cycles=0)
    fields = {"kind": kind.value, "endpoint": 2, "asid": node.asid, "va": 0x8000, "node": 1}
    node.driver.fault(fields)
    node.driver.fault(dict(fields, va=0x9000))
    node.core.run(5)
    assert node.driver.faults == {kind: 2} and node.port.commands == []
    assert node.driver.log == [(kind, fields), (kind, dict(fields, va=0x9000))]


def test_a_bad_fault_kind_is_named():
    one_line_error(ValueError, "fault kind 15 is no NiFaultKind",
                   lambda: Node().driver.fault({"kind": 15}))


def test_prefill_sends_a_fill_per_page_and_nothing_if_a_page_is_unmapped():
    node = Node()
    node.spaces.register_window(node.asid, 0xa000, 2 * PAGE_BYTES, key=9)
    one_line_error(LookupError, "page 0xc000 is not mapped in ASID 1; map it before prefill",
                   lambda: node.driver.prefill(node.asid, 0xa000, 3 * PAGE_BYTES))
    assert node.port.commands == []
    node.driver.prefill(node.asid, 0xaff8, 16)
    assert node.port.take() == [fill(node.asid, 0xa, BASE_PPN, WINDOW, key=9),
                                fill(node.asid, 0xb, BASE_PPN + 1, WINDOW, key=9)]
    assert node.driver.counters["fills"] == 2
