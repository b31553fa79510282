"""One node's behavioural side bound to its NI in the RTL :class:`rtl.ni.System`.

:class:`NodeSide` puts the node's :class:`behavioral.core.SMTCore`, :class:`behavioral.os.OS`,
:class:`behavioral.memory.MemoryHierarchy` and the OS's NI driver on the ports ``node__<i>__*``
of the system's Verilog:

* the core's MMIO accesses go out on ``cpu_request`` and come back in order on ``cpu_response``
  (a read gets the value, a write the :class:`rtl.layouts.MmioStatus`);
* its lock operations on ``lock_request`` / ``lock_response`` / ``lock_released``, notifications
  in on ``notify`` and handler returns out on ``handler_return``; the lock table's and the
  Notifier's hand-offs (``lock_os``, ``notify_os``) reach the OS, which takes an INTERRUPT
  arrival through the kernel's interrupt path on this node's hierarchy
  (:class:`behavioral.kernel.KernelPath`, its lines in the caches at the start);
* its loads and stores go through the hierarchy; an L1 miss probes the message buffer on
  ``mc_lookup`` and is completed by the answer on ``mc_data``, so that a message line the NI
  holds reaches the core the way the paper's victim-cache lookup gives it;
* the message buffer's coherence requests (``coh_req``) invalidate the caches and hand back a
  dirty copy on ``coh_resp``; its write-backs (``mem_write``) and partial-line reads
  (``mem_read``) go to DRAM; the TX engine's DMA reads (``dma_read``) get the newest copy of a
  line: a dirty cached one after the L2's hit time, else memory's after the DRAM latency;
* the OS's NI driver sends its commands on ``os_command`` and takes the NI's faults from
  ``fault``.

The core is stepped with the clock by :class:`tb.core_driver.CoreDriver`, so Python runs only
on edges where a port or the core has work.
"""

import itertools
import random
from collections import Counter, deque
from types import SimpleNamespace

import cocotb
from cocotb.triggers import ClockCycles, Event

from behavioral.kernel import KernelPath
from behavioral.memory import MemoryHierarchy, line_of
from behavioral.vm import AddressSpaces, NiDriver
from rtl.layouts import (LINE_WORDS, PAGE_BITS, CohResponse, HandlerReturn, LineBeat, LineRequest,
                         LockOsEvent, LockReleased, LockRequest, LockResponse, MemWriteBeat,
                         MmioRequest, MmioResponse, NiFault, NiFaultKind, NotifyEvent,
                         NotifyOsEvent, WordBeat, codec, ni_os_command_layout)

from .core_driver import CoreDriver
from .stream import cycle

__all__ = ["NodeSide"]


class NodeSide:
    """Node ``index`` of a system testbench: its core, OS, memory and NI driver on the ports.

    Parameters
    ----------
    testbench : :class:`tb.system_tb.SystemTB`
        Owns the clock, the stream port group and the run's parameters.
    index : int
        The node number.
    core_params, os_params, hierarchy_params, driver_params : dict
        Parameters of :class:`~behavioral.core.SMTCore`, :class:`~behavioral.os.OS`,
        :class:`~behavioral.memory.MemoryHierarchy` and :class:`~behavioral.vm.NiDriver`.
    coh_cycles : int
        Cycles the caches take to answer a coherence request.
    lockstep : bool
        Step the core every cycle (see :class:`tb.core_driver.CoreDriver`).
    backpressure : int
        Percent of cycles in which each port the node takes from is not ready, and each port it
        drives holds back what it has (0: none).
    memory_jitter : int
        Up to this many cycles more, drawn for each answer, before the caches answer a coherence
        request and memory a read or a DMA read (each port still answers in order).

    Attributes
    ----------
    core, os, hierarchy, spaces, driver
        The behavioural parts.
    counts : :class:`collections.Counter`
        Port traffic: MMIO accesses, probes and their hits, coherence requests, DMA lines, ...
    """

    def __init__(self, testbench, index, *, core_params=None, os_params=None,
                 hierarchy_params=None, driver_params=None, coh_cycles=3, lockstep=False,
                 backpressure=0, memory_jitter=0):
        self.tb = testbench
        self.index = index
        dut, ports = testbench.dut, testbench.ports
        prefix = f"node__{index}__"
        self.counts = Counter()
        self.coh_cycles = coh_cycles
        self.hierarchy = MemoryHierarchy(**(hierarchy_params or {}))
        self.dram_cycles = self.hierarchy.dram_cycles
        params = testbench.params
        self.driver_core = CoreDriver(
            ports, lock_port=SimpleNamespace(request=self._lock_request),
            notifier_port=self, on_residency=self._residency,
            core_params={"contexts": params.get("contexts", 4),
                         "mmio": SimpleNamespace(request=self._mmio_request),
                         "memory": SimpleNamespace(request=self._memory_access),
                         **(core_params or {})},
            os_params={"kernel": KernelPath.on_node(self.hierarchy), **(os_params or {})},
            lockstep=lockstep)
        self.core, self.os = self.driver_core.core, self.driver_core.os
        # (the node has been up: the kernel's interrupt path has run before, its lines cached
        # until the user's programs evict them)
        self.os.kernel.preload()
        self.spaces = AddressSpaces(asid_bits=params.get("asid_bits", 8))
        self.os_codec = codec(ni_os_command_layout(params.get("asid_bits", 8)))
        self.driver = NiDriver(self, self.spaces, later=self.core.after,
                               endpoints=params.get("endpoints", 8),
                               contexts=params.get("contexts", 4), **(driver_params or {}))

        self.rng = random.Random(testbench.rng.randrange(1 << 32))
        self.memory_jitter = memory_jitter
        self._due = {}                          # port -> cycle of its latest answer

        def source(name, **kwargs):
            return ports.source(dut, prefix + name, idle_percent=backpressure, rng=self.rng,
                                **kwargs)

        def sink(name, receive):
            return ports.sink(dut, prefix + name, on_receive=receive,
                              ready_percent=100 - backpressure, rng=self.rng)

        self._mmio_waiting = deque()            # (thread, write, addr) per access not answered
        self.cpu_request = source("cpu_request", on_accept=lambda payload, offered, taken:
                                  testbench.mmio_taken(index, payload, taken))
        sink("cpu_response", self._mmio_answer)
        self._lock_waiting = deque()
        self.lock_request = source("lock_request")
        sink("lock_response", self._lock_answer)
        sink("lock_released", self._released)
        sink("notify", self._notified)
        self.handler_return_port = source("handler_return")
        sink("lock_os", self._lock_os)
        sink("notify_os", self._notify_os)
        self.os_command = source("os_command", on_accept=lambda payload, offered, taken:
                                 testbench.os_command_taken(index, payload, taken))
        sink("fault", self._fault)
        self.mc_lookup = source("mc_lookup", on_accept=self._probe_taken)
        sink("mc_data", self._mc_beat)
        self._probes = deque()                  # (access, thread, issued cycle, words)
        self._probes_taken = 0                  # the first of them, which the NI has taken
        self._coherence = []                    # lines asked at this edge
        self._deferred = set()
        sink("coh_req", self._coherence_request)
        self.coh_resp = source("coh_resp")
        self._write_back = []
        sink("mem_write", self._write_back_beat)
        sink("mem_read", self._memory_read)
        self.mem_read_data = source("mem_read_data")
        sink("dma_read", self._dma_read)
        self.dma_data = source("dma_data")
        self._line_waiters = {}                 # line -> accesses waiting for its miss
        ports.after_edge(self._order_coherence)

    # The core's ports ---------------------------------------------------------------------------

    def describe(self):
        """One line of what this node holds now, for a run that stalls: each context's thread
        and what its top frame waits on, the OS's queued SPAWNs, waiting threads and TLB misses,
        the accesses not answered, and what the NI has not taken from this side's ports."""
        contexts = []
        for index in range(self.core.contexts):
            thread = self.core.resident(index)
            if thread is None:
                contexts.append(f"ctx{index} free")
                continue
            frame = thread.frames[-1]
            contexts.append(f"ctx{index} {thread.name} ({len(thread.frames)} frames, top "
                            f"{frame.kind} ep{frame.endpoint} op {type(frame.op).__name__}"
                            f"{', awaiting ' + frame.awaiting if frame.awaiting else ''}"
                            f"{', parked' if frame.parked else ''})")
        waiting = [f"{thread.name}{'' if thread.runnable else ' (parked)'}"
                   for thread in self.os.waiting]
        offset_mask = (1 << PAGE_BITS) - 1
        mmio = [f"{'write' if write else 'read'} ep{addr >> PAGE_BITS} +{addr & offset_mask:#x} "
                f"by t{thread}" for thread, write, addr in self._mmio_waiting]
        return (f"node {self.index}: {'; '.join(contexts)}; OS: {len(self.os._spawns)} SPAWNs "
                f"queued, waiting {waiting or 'none'}, {dict(self.os.counters)}; "
                f"MMIO unanswered {mmio or 'none'} ({len(self.cpu_request)} not taken), "
                f"{len(self._lock_waiting)} lock accesses unanswered, {len(self._probes)} probes "
                f"({self._probes_taken} taken), "
                f"{len(self._line_waiters)} lines missing; NI misses taken by the OS "
                f"{self.driver.faults[NiFaultKind.TX_MISS]} TX and "
                f"{self.driver.faults[NiFaultKind.RX_MISS]} RX, answered "
                f"{self.driver.counters['retries'] + self.driver.counters['rejects']}, "
                f"{len(self.driver._misses)} waiting; not taken by the NI: "
                f"{len(self.os_command)} OS commands, {len(self.coh_resp)} coherence answers, "
                f"{len(self.mem_read_data)} memory beats, {len(self.dma_data)} DMA beats, "
                f"{len(self.handler_return_port)} handler returns, {len(self.lock_request)} lock "
                f"requests; {len(self._deferred)} coherence requests deferred")

    def _mmio_request(self, write, asid, addr, value, thread):
        self._mmio_waiting.append((thread, write, addr))
        self.cpu_request.send([codec(MmioRequest).pack(write=write, asid=asid, addr=addr,
                                                       data=value)])
        self.counts["mmio"] += 1

    def _mmio_answer(self, payload, now):
        thread, write, _ = self._mmio_waiting.popleft()
        answer = codec(MmioResponse).unpack(payload)
        self.tb.check_mmio_answer(self.index, answer["status"],
                                  None if write else answer["data"])
        self.driver_core.sync()
        self.core.mmio_response(thread, answer["status"].value if write else answer["data"])

    def _lock_request(self, op, asid, addr, thread):
        self.lock_request.send([codec(LockRequest).pack(op=op, asid=asid, addr=addr,
                                                        thread=thread)])

    def _lock_answer(self, payload, now):
        fields = codec(LockResponse).unpack(payload)
        self.driver_core.sync()
        self.core.lock_response(fields["thread"], fields["status"])

    def _released(self, payload, now):
        fields = codec(LockReleased).unpack(payload)
        self.tb.notified(self.index, "released", fields, now)
        self.driver_core.sync()
        self.core.lock_released(fields["context"], fields["thread"], fields["asid"],
                                fields["addr"])

    def _notified(self, payload, now):
        fields = codec(NotifyEvent).unpack(payload)
        self.tb.notified(self.index, "notify", fields, now)
        self.driver_core.sync()
        self.core.notify(fields)

    def handler_return(self, op, endpoint, context):
        """The core's Notifier port."""
        self.handler_return_port.send([codec(HandlerReturn).pack(op=op, endpoint=endpoint,
                                                                 context=context)])

    def _lock_os(self, payload, now):
        fields = codec(LockOsEvent).unpack(payload)
        self.tb.notified(self.index, "lock_os", fields, now)
        self.driver_core.sync()
        self.os.lock_event(fields)

    def _notify_os(self, payload, now):
        fields = codec(NotifyOsEvent).unpack(payload)
        self.tb.notified(self.index, "notify_os", fields, now)
        self.driver_core.sync()
        self.os.notify_event(fields)

    # The OS's NI driver -------------------------------------------------------------------------

    def command(self, **fields):
        """The NI driver's port: queue a privileged command."""
        self.os_command.send([self.os_codec.pack(**fields)])
        self.counts["os_commands"] += 1

    def _residency(self, *args):
        self.driver.residency(*args)

    def _fault(self, payload, now):
        fields = codec(NiFault).unpack(payload)
        self.counts[f"fault_{fields['kind'].name.lower()}"] += 1
        self.tb.fault(self.index, fields, now)
        self.driver.fault(fields)

    # Loads and stores ---------------------------------------------------------------------------

    def _memory_access(self, write, addr, value, tag):
        """The core's memory port: answer access ``tag`` when it is done."""
        def answer(result, delay_cycles):
            self.core.after(delay_cycles, lambda _: self.core.memory_response(tag, result))
            self.driver_core.wake()
        self._access(write, addr, value, answer)

    async def load(self, pa):
        """Load the word at ``pa`` as the core would (through the caches, probing the message
        buffer on a miss); return its value. For the scoreboard's final reads."""
        done, result = Event(), []

        def answer(value, delay_cycles):
            result.append(value)
            done.set()
        self._access(False, pa, 0, answer)
        await done.wait()
        return result[0]

    def _access(self, write, addr, value, answer):
        """Start an access; ``answer(value or None, delay_cycles)`` when it is done, the delay
        counted from the current core cycle."""
        line = line_of(addr)
        if self.hierarchy.pending(line):
            # One miss per line: the access waits for the outstanding one, then goes again.
            self._line_waiters.setdefault(line, deque()).append((write, addr, value, answer))
            return
        access = self.hierarchy.access(addr, write=write, value=value if write else None)
        if access.done:
            answer(None if write else access.value, access.cycles + 1)
            return
        self.counts["mc_lookups"] += 1
        self._probes.append([access, answer, cycle(), []])
        self.mc_lookup.send([codec(LineRequest).pack(addr=line)])

    def _mc_beat(self, payload, now):
        probe = self._probes[0]
        beat = codec(LineBeat).unpack(payload)
        if beat["hit"]:
            probe[3].append(beat["data"])
        if not beat["last"]:
            return
        self._probes.popleft()
        self._probes_taken -= 1
        access, answer, issued, words = probe
        hit = bool(beat["hit"])
        self.counts["mc_hits" if hit else "mc_misses"] += 1
        self.hierarchy.complete(access, words if hit else None, now - issued)
        self.driver_core.sync()
        answer(None if access.write else access.value,
               max(0, access.cycles - (now - issued)))
        line = access.line
        if line in self._deferred:
            self._deferred.discard(line)
            self._answer_coherence(line)
        for waiting in self._line_waiters.pop(line, ()):
            self._access(*waiting)

    # The message buffer's requests --------------------------------------------------------------

    def _coherence_request(self, payload, now):
        # Decided after the edge's probes: a probe taken at the same edge was ordered first.
        self._coherence.append(codec(LineRequest).field(payload, "addr"))

    def _probe_taken(self, payload, offered, now):
        self._probes_taken += 1

    def _order_coherence(self, now):
        # Only a probe the message buffer has taken (at this edge or before) is ordered before
        # the request; one still waiting will be ordered after it, and hit: the buffer does not
        # take it until the line is complete, so waiting for it would be waiting forever.
        for line in self._coherence:
            probed = any(probe[0].line == line
                         for probe in itertools.islice(self._probes, self._probes_taken))
            if self.hierarchy.pending(line) and probed:
                self._deferred.add(line)
            else:
                self._answer_coherence(line)
        self._coherence.clear()

    def _answer_coherence(self, line):
        self.counts["coherence"] += 1
        dirty = self.hierarchy.invalidate(line, miss_ordered_after=True)
        if dirty is None:
            beats = [codec(CohResponse).pack(dirty=0, last=1)]
        else:
            beats = [codec(CohResponse).pack(dirty=1, data=value, last=index == LINE_WORDS - 1)
                     for index, value in enumerate(dirty)]
        self._answer(self.coh_resp, self.coh_cycles, beats)

    def _write_back_beat(self, payload, now):
        beat = codec(MemWriteBeat).unpack(payload)
        self._write_back.append(beat["data"])
        if beat["last"]:
            words, self._write_back = self._write_back, []
            self.hierarchy.memory_write(beat["addr"], words)
            self.counts["write_backs"] += 1

    def _memory_read(self, payload, now):
        words = self.hierarchy.memory_read(codec(LineRequest).field(payload, "addr"))
        self._answer(self.mem_read_data, self.dram_cycles, _word_beats(words))

    def _dma_read(self, payload, now):
        words, cycles = self.hierarchy.dma_read(codec(LineRequest).field(payload, "addr"))
        self.counts["dma_lines"] += 1
        self._answer(self.dma_data, cycles, _word_beats(words))

    def _answer(self, port, cycles, beats):
        """Send ``beats`` on ``port`` ``cycles`` from now, plus the jitter, after what the port
        answered before: a port answers in the order of its requests, whatever their latencies
        (a DMA line dirty in the L2 behind one from DRAM waits for it)."""
        jitter = self.rng.randrange(self.memory_jitter + 1) if self.memory_jitter else 0
        # (a cycle after the last answer's start at the earliest: two timers of one edge would
        # send in no set order; the port's beats queue behind each other anyway)
        due = max(cycle() + cycles + jitter, self._due.get(port, -1) + 1)
        self._due[port] = due
        self._later(due - cycle(), port.send, beats)

    def _later(self, cycles, action, *args):
        async def wait():
            await ClockCycles(self.tb.dut.clk, cycles)
            action(*args)
        cocotb.start_soon(wait())

    @property
    def outstanding(self):
        return (len(self._mmio_waiting) + len(self._probes) + len(self._deferred)
                + len(self.cpu_request) + len(self.os_command) + len(self.lock_request)
                + len(self.handler_return_port) + len(self.coh_resp) + len(self.dma_data)
                + len(self.mem_read_data))


def _word_beats(words):
    return [codec(WordBeat).pack(data=value, last=index == LINE_WORDS - 1)
            for index, value in enumerate(words)]

