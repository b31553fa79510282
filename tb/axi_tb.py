"""The testbench of the NI's AXI shell (:class:`rtl.axi.NetworkInterfaceAXI`): every port of
every node driven by cocotbext-axi, the reference NI as scoreboard.

Each node has an :class:`AxiLiteMaster` on its user pages and one on its OS page, an
:class:`AxiRam` as its memory, and an :class:`AxiStreamSource` or :class:`AxiStreamSink` on each
AXI4-Stream port. The testbench plays the links (each message taken from a node's link out is
checked and handed to its destination's link in), the OS (commands through the OS page, events
read from it) and the core (lock operations, handler returns, and a cache that answers the
MessageBuffer's coherence requests and reads lines through its L1-miss probes).

Scoreboard: every node's :class:`behavioral.refni.ReferenceNI` is given what its NI is given:
each MMIO access (the AXI response, OKAY or SLVERR, and a read's data checked against the
model's answer), each OS command, and each message as the link hands it over (a message on a
link out must be the one the model predicted at its doorbell, ``TDEST`` its destination on every
beat). The model's notifications are expected on the core and OS ports, in order; at the end
every word the model wrote is read back through the core's path and compared, and nothing may be
left over: no message, event or answer unaccounted for.
"""

import logging
import warnings
from collections import deque

import cocotb
from cocotb.triggers import ClockCycles, SimTimeoutError, with_timeout
from cocotbext.axi import (AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiStreamBus,
                           AxiStreamFrame, AxiStreamSink, AxiStreamSource)
from cocotbext.axi.constants import AxiResp as BusResp

from behavioral.message import Message
from behavioral.refni import ReferenceNI, RxResult
from rtl.axi import CORE_STREAMS
from rtl.layouts import (DESCRIPTOR_WORDS, FLIT_BYTES, LINE_BYTES, LINE_WORDS, MMIO_ADDR_BITS,
                         OS_COMMAND_WORDS, OS_COUNTERS, PAGE_BITS, CohResponse, LineBeat,
                         LineRequest, LockOsEvent, LockRequest, LockResponse, MessageHeader,
                         MmioStatus, NiFault, NotifyOsEvent, OsReg, SendDescriptor, UserReg,
                         axis_data_bits, codec, ni_os_command_layout)

from .component_tb import ComponentTB
from .runner import CLOCK_PERIOD_NS
from .system_scoreboard import ExpectedWords

__all__ = ["AxiNodesTB", "ANSWER_CYCLES", "MEMORY_BYTES", "axis_pack", "axis_unpack"]

# (cocotbext-axi 0.1.28 still uses what cocotb 2 deprecates: its warnings are not ours)
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")

#: The longest a port may take to answer an access of the testbench.
ANSWER_CYCLES = 5000
#: Each node's memory (the AxiRam's size): the tests' pages sit below it.
MEMORY_BYTES = 1 << 24
#: The events of the OS page, by register: what each holds.
_EVENTS = {OsReg.FAULT: NiFault, OsReg.LOCK_EVENT: LockOsEvent,
           OsReg.NOTIFY_EVENT: NotifyOsEvent}


def axis_pack(layout, **fields):
    """Return ``fields`` of ``layout`` as the ``TDATA`` bytes of the shell's stream ports."""
    return codec(layout).pack(**fields).to_bytes(axis_data_bits(layout) // 8, "little")


def axis_unpack(layout, frame):
    """Return the fields of ``layout`` a one-beat frame carries."""
    bits = int.from_bytes(bytes(frame.tdata), "little")
    return codec(layout).unpack(bits & ((1 << codec(layout).width) - 1))


class _Node:
    """One node's drivers, memory, core cache and reference NI."""

    def __init__(self, tb, index):
        dut, clock, reset = tb.dut, tb.dut.clk, tb.dut.rst
        params = tb.params
        self.tb = tb
        self.index = index
        prefix = f"n{index}_"
        # (the drivers' reports of each reset and of their configuration say nothing here: their
        # loggers are named after the port's prefix)
        for name in ("s_axil", "s_axil_os", "m_axi", "m_axis_link", "s_axis_link",
                     *(f"{'m' if from_ni else 's'}_axis_{name}"
                       for name, (from_ni, _) in CORE_STREAMS.items())):
            logging.getLogger(f"cocotb.{dut._name}.{prefix}{name}").setLevel(logging.WARNING)
        self.user = AxiLiteMaster(AxiLiteBus.from_prefix(dut, prefix + "s_axil"), clock, reset)
        self.os = AxiLiteMaster(AxiLiteBus.from_prefix(dut, prefix + "s_axil_os"), clock, reset)
        self.ram = AxiRam(AxiBus.from_prefix(dut, prefix + "m_axi"), clock, reset,
                          size=MEMORY_BYTES)
        self.memory_reads = self.memory_writes = 0
        self._count_bursts()
        self.link_out = AxiStreamSink(AxiStreamBus.from_prefix(dut, prefix + "m_axis_link"),
                                      clock, reset)
        self.link_in = AxiStreamSource(AxiStreamBus.from_prefix(dut, prefix + "s_axis_link"),
                                       clock, reset)
        self.streams = {}
        for name, (from_ni, _) in CORE_STREAMS.items():
            kind = AxiStreamSink if from_ni else AxiStreamSource
            bus = AxiStreamBus.from_prefix(dut, f"{prefix}{'m' if from_ni else 's'}_axis_{name}")
            self.streams[name] = kind(bus, clock, reset)
        self.model = ReferenceNI(index, nodes=params.get("nodes", 2),
                                 endpoints=params.get("endpoints", 8),
                                 contexts=params.get("contexts", 4),
                                 asid_bits=params.get("asid_bits", 8))
        self.asid_bits = params.get("asid_bits", 8)
        #: Messages the model predicted at their doorbells, in the order they must leave.
        self.sends = deque()
        #: Words the model wrote into this node's memory: physical address -> word.
        self.expected = {}
        #: Notifications the model gave, in order: ("event" | "signal" | "os_event", fields).
        self.notifications = deque()
        #: Lines the core's cache holds (handed over by the MessageBuffer): line -> words.
        self.cache = {}
        #: The lines the last message the model delivered wrote (its payload's and entry's).
        self.written = set()
        self.coherence_requests = 0
        self.dirty_answers = 0

    def _count_bursts(self):
        """Count the bursts the AxiRam serves (it calls its ports' ``_read`` and ``_write`` once
        a burst)."""
        read, write = self.ram.read_if._read, self.ram.write_if._write

        async def counted_read(address, length):
            self.memory_reads += 1
            return await read(address, length)

        async def counted_write(address, data):
            self.memory_writes += 1
            await write(address, data)

        self.ram.read_if._read, self.ram.write_if._write = counted_read, counted_write

    async def answer(self, awaitable, what):
        """Return what ``awaitable`` (a driver's access) gives; fail naming ``what`` if it takes
        more than :data:`ANSWER_CYCLES`."""
        try:
            return await with_timeout(awaitable, ANSWER_CYCLES * CLOCK_PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"node {self.index}: {what} not answered within "
                                 f"{ANSWER_CYCLES} cycles") from None

    # The core ---------------------------------------------------------------------------------

    async def answer_coherence(self):
        """Answer each coherence request: the cache's line, dirty, if it holds it (and give it
        up), else "not held"."""
        requests, answers = self.streams["coh_req"], self.streams["coh_resp"]
        while True:
            line = axis_unpack(LineRequest, await requests.recv())["addr"]
            self.coherence_requests += 1
            words = self.cache.pop(line, None)
            if words is None:
                await answers.send(axis_pack(CohResponse, dirty=0, last=1))
                continue
            self.dirty_answers += 1
            for index, word in enumerate(words):
                await answers.send(axis_pack(CohResponse, dirty=1, data=word,
                                         last=int(index == LINE_WORDS - 1)))

    async def read_line(self, line):
        """Return the words of physical line ``line`` as the core reads them: from its cache,
        else through the MessageBuffer's L1-miss probe (a hit hands the line to the cache), else
        from memory."""
        if line in self.cache:
            return list(self.cache[line])
        await self.streams["mc_lookup"].send(axis_pack(LineRequest, addr=line))
        answers = self.streams["mc_data"]
        beat = axis_unpack(LineBeat, await self.answer(answers.recv(), "mc_data"))
        if not beat["hit"]:
            self.tb.check(beat["last"], f"node {self.index}: a miss of line {line:#x} is one beat")
            return list(self.memory_words(line))
        words = [beat["data"]]
        while not beat["last"]:
            beat = axis_unpack(LineBeat, await self.answer(answers.recv(), "mc_data"))
            words.append(beat["data"])
        self.tb.check(len(words) == LINE_WORDS, f"node {self.index}: a hit of line {line:#x} "
                      f"gave {len(words)} words")
        self.cache[line] = words
        return list(words)

    def memory_words(self, line):
        """Return line ``line`` of memory as it stands (the AxiRam's storage)."""
        data = self.ram.read(line * LINE_BYTES, LINE_BYTES)
        return [int.from_bytes(data[i:i + FLIT_BYTES], "little")
                for i in range(0, LINE_BYTES, FLIT_BYTES)]

    async def lock(self, op, asid, addr, thread):
        """Send a lock operation; return the lock table's answer."""
        await self.streams["lock_request"].send(axis_pack(LockRequest, op=op, asid=asid,
                                                          addr=addr, thread=thread))
        answer = await self.answer(self.streams["lock_response"].recv(), "lock_response")
        return axis_unpack(LockResponse, answer)

    # The user pages and the OS page -------------------------------------------------------------

    async def mmio(self, write, asid, endpoint, offset, value=0, *, exact=True):
        """Make one user-page access by ``asid``; check it against the model; return the value
        read. With ``exact`` False the value read is not compared (it changes as the NI works:
        STATUS, RING_TAIL), only the answer's kind."""
        addr = endpoint << PAGE_BITS | offset
        status, expected = self.model.mmio(write, asid, addr, value)
        bus_addr = asid << MMIO_ADDR_BITS | addr
        if write:
            resp = (await self.answer(self.user.write(bus_addr, value.to_bytes(8, "little")),
                                      f"write of {bus_addr:#x}")).resp
            data = 0
        else:
            answer = await self.answer(self.user.read(bus_addr, 8), f"read of {bus_addr:#x}")
            resp, data = answer.resp, int.from_bytes(answer.data, "little")
        ok = status is MmioStatus.OK
        self.tb.check(resp == (BusResp.OKAY if ok else BusResp.SLVERR),
                      f"node {self.index}: {'write' if write else 'read'} of {bus_addr:#x} "
                      f"answered {resp!r}, the model {status.name}")
        if exact or not ok:
            self.tb.check(data == expected, f"node {self.index}: read of {bus_addr:#x} gave "
                          f"{data:#x}, the model {expected:#x}")
        return data

    async def os_command(self, **fields):
        """Write a privileged command into the OS page and issue it; give it to the model."""
        bits = codec(ni_os_command_layout(self.asid_bits)).pack(**fields)
        for word in range(OS_COMMAND_WORDS):
            value = (bits >> (64 * word)) & ((1 << 64) - 1)
            await self.os_write(OsReg.COMMAND.value + 8 * word, value)
        await self.os_write(OsReg.ISSUE.value, 1)
        self.model.os_command(**fields)

    async def os_write(self, offset, value, *, expect=BusResp.OKAY, data=None):
        """Write the OS page; check the response."""
        data = value.to_bytes(8, "little") if data is None else data
        resp = (await self.answer(self.os.write(offset, data), f"OS write of {offset:#x}")).resp
        self.tb.check(resp == expect, f"node {self.index}: OS write of {offset:#x} answered "
                      f"{resp!r}, expected {expect!r}")

    async def os_read(self, offset, *, expect=BusResp.OKAY):
        """Read the OS page; check the response; return the word."""
        answer = await self.answer(self.os.read(offset, 8), f"OS read of {offset:#x}")
        self.tb.check(answer.resp == expect, f"node {self.index}: OS read of {offset:#x} "
                      f"answered {answer.resp!r}, expected {expect!r}")
        return int.from_bytes(answer.data, "little")

    async def take_event(self, register):
        """Read the OS page's event ``register``; return its fields and take it, or None."""
        low = await self.os_read(register.value)
        high = await self.os_read(register.value + 8)
        if not high >> 63:
            return None
        layout = _EVENTS[register]
        bits = (low | (high & ((1 << 63) - 1)) << 64) & ((1 << codec(layout).width) - 1)
        return codec(layout).unpack(bits)

    async def counters(self):
        """Return the counters of the OS page, by name."""
        return {name: await self.os_read(OsReg.COUNTERS.value + 8 * index)
                for index, name in enumerate(OS_COUNTERS)}

    def irq(self):
        return int(getattr(self.tb.dut, f"n{self.index}_irq").value)


class AxiNodesTB(ComponentTB):
    """Drives ``nodes`` :class:`rtl.axi.NetworkInterfaceAXI` (the ``ni_axi_nodes`` top) with
    cocotbext-axi only, as the module docstring says.

    Attributes
    ----------
    nodes : list of :class:`_Node`
    mismatches : list of str
        What the scoreboard found wrong.
    """

    def __init__(self, dut, *, seed):
        super().__init__(dut, seed=seed)
        self.mismatches = []
        self.nodes = [_Node(self, index) for index in range(self.params.get("nodes", 2))]
        self.forwarded = 0
        #: Words read back and compared with what the model wrote.
        self.compared = 0

    def check(self, condition, what):
        """Record ``what`` as a mismatch unless ``condition`` holds."""
        if not condition:
            self.mismatches.append(what)
            self.dut._log.error("mismatch: %s", what)

    async def start(self):
        await super().start()
        # (the AXI drivers follow the reset themselves; the links and the core run from here)
        await ClockCycles(self.dut.clk, 2)
        for node in self.nodes:
            cocotb.start_soon(self._forward(node))
            cocotb.start_soon(node.answer_coherence())

    async def _forward(self, source):
        """Take each message off ``source``'s link out, check it against the model's prediction
        and ``TDEST``, give it to the destination's model and link in."""
        while True:
            frame = await source.link_out.recv()
            data = bytes(frame.tdata)
            flits = [(int.from_bytes(data[i:i + FLIT_BYTES], "little"), i + FLIT_BYTES == len(data))
                     for i in range(0, len(data), FLIT_BYTES)]
            destination = codec(MessageHeader).field(flits[0][0], "dst_node")
            # (the sink gives one TDEST for the frame when every beat had the same)
            tdest = set(frame.tdest) if isinstance(frame.tdest, list) else {frame.tdest}
            self.check(tdest == {destination}, f"node {source.index}: TDEST {sorted(tdest)} on "
                       f"a message to node {destination}")
            expected = source.sends.popleft() if source.sends else None
            self.check(expected is not None and expected.flits() == flits,
                       f"node {source.index}: sent {Message.from_flits(flits)}, the model "
                       f"{expected}")
            if destination < len(self.nodes):
                target = self.nodes[destination]
                outcome = target.model.receive(flits)
                self._expect(target, outcome)
                await target.link_in.send(AxiStreamFrame(data))
            self.forwarded += 1

    def _expect(self, node, outcome):
        """Keep what a message the model took should leave: its words and its notification."""
        if outcome.result in (RxResult.DELIVERED, RxResult.REJECTED):
            words = ExpectedWords()
            outcome.apply(words)
            node.expected.update(words)
            node.written = {pa // LINE_BYTES for pa in words}
        if outcome.completion is not None:
            result = node.model.notifier.completion(**outcome.completion)
            for kind in ("event", "signal", "os_event"):
                if getattr(result, kind) is not None:
                    node.notifications.append((kind, getattr(result, kind)))

    async def send(self, node, asid, endpoint, descriptor, payload_words=(), *, dma_words=None,
                   local_pa=None):
        """Write a send descriptor (and a PIO payload) into ``endpoint``'s slot and ring its
        doorbell; for DMA, first store ``dma_words`` at ``local_pa`` of the sender's memory.
        The model predicts the message."""
        if dma_words is not None:
            node.ram.write(local_pa, b"".join(w.to_bytes(8, "little") for w in dma_words))
        bits = codec(SendDescriptor).pack(**descriptor)
        for word in range(DESCRIPTOR_WORDS):
            await node.mmio(1, asid, endpoint, UserReg.DESCRIPTOR.value + 8 * word,
                            (bits >> (64 * word)) & ((1 << 64) - 1))
        for index, word in enumerate(payload_words):
            await node.mmio(1, asid, endpoint, UserReg.PAYLOAD.value + 8 * index, word)
        await node.mmio(1, asid, endpoint, UserReg.DOORBELL.value, 1)
        outcome = node.model.send_next(self._memory_read(node))
        if outcome is not None and outcome.message is not None:
            node.sends.append(outcome.message)
        return outcome

    @staticmethod
    def _memory_read(node):
        def read(pa):
            return int.from_bytes(node.ram.read(pa, 8), "little")
        return read

    async def settle(self, timeout_cycles=20_000):
        """Wait until every predicted message has left and been handed over, and the links are
        idle."""
        await self.wait_until(
            lambda: all(not node.sends and node.link_out.empty() and node.link_in.empty()
                        and node.link_in.idle() for node in self.nodes),
            timeout_cycles, lambda: "messages " + ", ".join(
                f"node {node.index}: {len(node.sends)} to leave" for node in self.nodes))
        await ClockCycles(self.dut.clk, 200)

    async def check_lines(self, node, lines):
        """Read ``lines`` through ``node``'s core path and compare every word in them the model
        wrote (counted in :attr:`compared`)."""
        for line in sorted(lines):
            words = await node.read_line(line)
            for index, word in enumerate(words):
                pa = line * LINE_BYTES + FLIT_BYTES * index
                if pa in node.expected:
                    self.compared += 1
                    self.check(word == node.expected[pa], f"node {node.index}: word at {pa:#x} "
                               f"is {word:#x}, the model wrote {node.expected[pa]:#x}")

    async def check_memory(self):
        """Read back every word the model wrote, through each node's core path."""
        for node in self.nodes:
            await self.check_lines(node, {pa // LINE_BYTES for pa in node.expected})

    def leftovers(self):
        """Return what is left over: predictions not met, frames or answers nobody took."""
        left = []
        for node in self.nodes:
            if node.sends:
                left.append(f"node {node.index}: {len(node.sends)} messages never left")
            if node.notifications:
                left.append(f"node {node.index}: notifications never seen: "
                            f"{list(node.notifications)}")
            for name, (from_ni, _) in CORE_STREAMS.items():
                if from_ni and not node.streams[name].empty():
                    left.append(f"node {node.index}: {name} has beats nobody expected")
            if not node.link_out.empty():
                left.append(f"node {node.index}: link out has frames not forwarded")
        return left

