"""A scenario's processes as threads of the behavioural cores, written with the message library.

:class:`Workload` sets up every process of a :class:`behavioral.scenario.Scenario` on its node
(an ASID, its receive window, a DMA send buffer, its endpoint and completion ring, one thread)
and runs its program: sends (PIO or DMA) and waits for the messages it must have consumed before
the next send (ping-pong). How a process learns of an arrival is its endpoint's armed mode:

* NONE: the thread polls RING_TAIL and consumes what is there;
* LOCK: the thread waits on the endpoint's notification lock when its ring is empty, then
  consumes every entry there. The lock counts the signals not yet waited for, and a full count
  holds the node's reception (:class:`rtl.ni.NetworkInterface`, ``lock_count_bits``), so the
  thread waits once for each notified message it consumes, also for those it found by polling;
* BRANCH: a handler consumes one entry per arrival, run in place of the thread, which computes
  while it has nothing to send;
* SPAWN: a handler thread is started per arrival on a free context; the main thread computes;
* INTERRUPT: as BRANCH, the handler run in place of the thread, after the OS's interrupt path.

With NONE and LOCK, a thread whose send is under way polls RING_TAIL between its looks at STATUS
and consumes what came: a send held by a full ring then cannot wait for ever on a peer whose own
send waits for this ring.

A scenario's compute threads (``[[compute]]``) compute in a loop beside the processes, each
turn followed by a load of the next line of the thread's working set if it has one (``lines``,
its own pages, walked in an order drawn anew each pass); each notes the cycle at which every
turn of its loop ends and its own L2 misses by then (:attr:`Workload.compute`), so that its
instructions per cycle and misses over any stretch of the run can be told.

Consuming an entry loads it through the node's memory (a message buffer line reaches the core
by the L1-miss probe) and advances RING_HEAD. Each message gets a record
(:attr:`Workload.records`) with the cycles at which its steps happened: ``t_start`` (the
sending thread begins the send; a DMA send first stores its payload into the send buffer),
``t_call`` (it calls the message library's send, the payload in place) and ``t_sent`` (the call
returns), ``t_handler`` and ``t_consumed``; the testbench adds the ones only the hardware side
sees.

The node environment given to :class:`Workload` (one per node) has ``core``, ``os``, ``spaces``
(:class:`behavioral.vm.AddressSpaces`), ``driver`` (:class:`behavioral.vm.NiDriver`) and
``hierarchy`` (:class:`behavioral.memory.MemoryHierarchy`, where a DMA payload "in DRAM" is
put).
"""

import enum
import functools
import random

from rtl.layouts import (COMPLETION_BYTES, FLIT_BYTES, LINE_BYTES, CompletionStatus, MmioStatus,
                         NiFaultKind, NotifyMode, TxError, UserReg)

from . import msglib
from .core import Compute, Load, MmioRead, Store
from .memory import SparseMemory

__all__ = ["Workload", "MessageStatus", "settled_without_entry", "HANDLER_PC", "LOCK_VA",
           "STACK_VA", "MAIN_THREAD_BASE", "SPAWN_THREAD_BASE", "COMPUTE_THREAD", "COMPUTE_VA",
           "compute_rate", "compute_misses"]

#: Where the handlers are: endpoint ``e``'s process has its handler at HANDLER_PC + e * 0x100
#: (one table per core: the handler PC tells which process's ring the entry pointer is in, for
#: rings of different processes may share a VA). The notification lock and the stack of spawned
#: handlers are at the same VAs in every address space.
HANDLER_PC = 0x0040_0000
HANDLER_STRIDE = 0x100
LOCK_VA = 0x0050_0000
STACK_VA = 0x0060_0000
#: Thread ids: process ``i`` (in declaration order) runs as thread MAIN_THREAD_BASE + i; the
#: handlers a SPAWN endpoint starts run as SPAWN_THREAD_BASE + i (BRANCH handlers run in the
#: main thread).
MAIN_THREAD_BASE = 1
SPAWN_THREAD_BASE = 128
#: A node's compute thread (``[[compute]]``): below every process's.
COMPUTE_THREAD = 0
#: Where a compute thread's working set starts, in its own address space.
COMPUTE_VA = 0x4000_0000
#: Instructions a waiting BRANCH or SPAWN process computes between looks at what it consumed.
SPIN_INSTRUCTIONS = 8
#: Entries of a process's completion ring unless its scenario says (``ring``).
RING_ENTRIES = 16


def compute_rate(instructions, turns, start, end):
    """Return the instructions per cycle of a compute thread (``instructions`` a turn, its turns
    ending at the cycles ``turns``) from cycle ``start`` to ``end``: of the turns that ended in
    that stretch, those after the first, over the cycles from the first one's end to the last
    one's. None if fewer than two turns ended in it."""
    inside = [cycle for cycle in turns if start <= cycle <= end]
    if len(inside) < 2:
        return None
    return instructions * (len(inside) - 1) / (inside[-1] - inside[0])


def compute_misses(instructions, turns, misses, start, end):
    """Return a compute thread's L2 misses per 1,000 instructions from cycle ``start`` to
    ``end``, over the same turns as :func:`compute_rate` (``misses``: its misses by the end of
    each turn). None if fewer than two turns ended in it."""
    inside = [index for index, cycle in enumerate(turns) if start <= cycle <= end]
    if len(inside) < 2:
        return None
    return 1000 * (misses[inside[-1]] - misses[inside[0]]) / (instructions * (len(inside) - 1))


def _statuses():
    names = {"PLANNED": "planned", "SENT": "sent"}
    names.update((status.name, status.name.lower()) for status in CompletionStatus)
    for refusal in (*TxError, *MmioStatus):
        if refusal not in (TxError.NONE, MmioStatus.OK):
            names[f"REFUSED_{refusal.name}"] = f"refused_{refusal.name.lower()}"
    names.update((f"DISCARDED_{kind.name}", f"discarded_{kind.name.lower()}")
                 for kind in NiFaultKind)
    return names


#: What became of a message: PLANNED (not sent yet), SENT (left its NI), DELIVERED or REJECTED
#: (the completion entry its receiver consumed says which), REFUSED_<error> (the sending NI
#: refused it: a :class:`rtl.layouts.TxError`, or the :class:`rtl.layouts.MmioStatus` of a write
#: it refused) or DISCARDED_<fault> (the receiving NI dropped it: a
#: :class:`rtl.layouts.NiFaultKind`). A string enum: records and JSON hold the lower-case names.
MessageStatus = enum.StrEnum("MessageStatus", _statuses())


def settled_without_entry(status):
    """Return whether a message with ``status`` is settled with no completion entry to wait for
    (refused by its sender's NI or discarded by its receiver's)."""
    return status.name.startswith(("REFUSED_", "DISCARDED_"))


class _Process:
    """Run-time state of one process."""

    def __init__(self, spec, index, node):
        self.spec = spec
        self.node = node
        self.tid = MAIN_THREAD_BASE + index
        # The thread the NI names for notifications: the main thread, or the spawned handlers'.
        self.notified_tid = SPAWN_THREAD_BASE + index if spec.notify is NotifyMode.SPAWN \
            else self.tid
        self.asid = node.spaces.create_process(spec.name)
        self.ring = None
        self.receiver = None
        self.consumed = set()           # ring indices consumed (handlers may finish out of order)
        self.head = 0                   # the head written to the NI
        # LOCK: WAITs returned for notified messages not consumed yet (at most the one that
        # woke the thread), so that the thread waits once for each notified message
        self.signals = 0

    @property
    def endpoint(self):
        return self.spec.endpoint


class Workload:
    """The processes of ``scenario`` on ``nodes`` (node index -> environment).

    Parameters
    ----------
    scenario : :class:`behavioral.scenario.Scenario`
    nodes : dict
        Node number -> an object with ``core``, ``os``, ``spaces`` and ``driver``.
    tlb_prefill : bool
        Fill the NI TLBs with the windows and send buffers before the run, so that no message
        waits for the OS's miss handling (the latency figures' set-up); else the first access to
        each page misses.

    Attributes
    ----------
    records : dict
        Message id -> record (``id``, ``from``, ``to``, ``bytes``, ``send``, ``notify``,
        ``status``, and ``t_*`` cycle stamps as they happen).
    entries : dict
        Message id -> the completion entry its receiver consumed (fields of
        :data:`rtl.layouts.CompletionEntry`).
    strays : list
        ``(process, entry)`` of each entry consumed that names no message of the scenario, or
        one consumed before.
    sent_memory : dict
        Node -> :class:`behavioral.memory.SparseMemory` of what each process stored into its
        send buffer (by physical address), for the scoreboard's DMA predictions.
    compute : dict
        Node -> ``(instructions per turn, [cycle at which each turn ended], [its L2 misses by
        then])`` of its compute thread (see :func:`compute_rate`).
    """

    def __init__(self, scenario, nodes, *, tlb_prefill=True):
        self.scenario = scenario
        self.nodes = nodes
        self.records = {}
        self.entries = {}
        self.strays = []
        self.sent_memory = {index: SparseMemory() for index in nodes}
        self.sending = {}               # (node, endpoint) -> message id being sent
        self.processes = {}
        self._armed = 0
        for index, spec in enumerate(scenario.processes.values()):
            self.processes[spec.name] = _Process(spec, index, nodes[spec.node])
        for process in self.processes.values():
            self._set_up(process, tlb_prefill)
        self.compute = {}
        for node, instructions in scenario.compute.items():
            environment = nodes[node]
            asid = environment.spaces.create_process(f"compute{node}")
            lines = self._working_set(environment, asid, scenario.compute_lines.get(node, 0),
                                      f"compute{node}")
            self.compute[node] = (instructions, [], [])
            environment.os.create_thread(
                COMPUTE_THREAD, asid,
                self._computing(environment, instructions, lines, f"compute{node}",
                                *self.compute[node][1:]),
                evictable=True, name=f"compute{node}")
        self._notified = {message.id: message.notify for message in scenario.messages}
        for message in scenario.messages:
            self.records[message.id] = {
                "id": message.id, "from": message.src, "to": message.dst,
                "bytes": message.bytes, "send": message.send,
                "notify": self.processes[message.dst].spec.notify.name.lower()
                if message.notify else "off", "status": MessageStatus.PLANNED}

    def _set_up(self, process, tlb_prefill):
        spec, node = process.spec, process.node
        spaces, driver = node.spaces, node.driver
        spaces.register_window(process.asid, spec.window.va, spec.window.bytes, spec.window.key)
        spaces.map(process.asid, spec.send_buffer.va, spec.send_buffer.bytes, local_read=True)
        process.ring = driver.open_endpoint(spec.endpoint, process.asid, process.notified_tid,
                                            ring_entries=spec.ring)
        process.receiver = msglib.Receiver(spec.endpoint, process.ring)
        if tlb_prefill:
            driver.prefill(process.asid, spec.window.va, spec.window.bytes)
            driver.prefill(process.asid, spec.send_buffer.va, spec.send_buffer.bytes)
        node.core.handlers[self._handler_pc(process)] = self._handler_for(process)
        # The OS's copy of what the process arms: a spawned handler runs in the endpoint's
        # address space, and a notification the OS delivers later runs the same handler.
        node.os.set_endpoint(spec.endpoint, spec.notify, asid=process.asid,
                             thread=process.notified_tid,
                             lock=LOCK_VA, handler_pc=self._handler_pc(process), stack=STACK_VA)
        node.os.create_thread(process.tid, process.asid, self._main(process),
                              name=spec.name)

    # What the testbench asks ------------------------------------------------------------------

    def process_of(self, node, endpoint):
        """Return the name of the process owning ``endpoint`` of ``node``."""
        for name, process in self.processes.items():
            if process.spec.node == node and process.spec.endpoint == endpoint:
                return name
        raise KeyError(f"no process owns endpoint {endpoint} of node {node}")

    def ring_va(self, name):
        return self.processes[name].ring.va

    def asid(self, name):
        return self.processes[name].asid

    def stamp(self, message_id, name, cycle):
        """Record that message ``message_id`` reached step ``name`` at ``cycle`` (first time
        only)."""
        self.records[message_id].setdefault(name, cycle)

    # Threads ----------------------------------------------------------------------------------

    def _main(self, process):
        spec = process.spec
        mode = spec.notify
        yield from msglib.arm(spec.endpoint, mode, lock=LOCK_VA,
                              handler=self._handler_pc(process), stack=STACK_VA)
        # Nobody sends before every process is armed: a message must find its mode set.
        self._armed += 1
        while self._armed < len(self.processes):
            yield Compute(SPIN_INSTRUCTIONS)
        for kind, step in self.scenario.program(spec.name):
            if kind == "send":
                if step.gap:
                    yield Compute(step.gap)
                yield from self._send(process, step)
            else:
                while step not in self.entries:
                    yield from self._wait(process)
        while True:
            yield from self._wait(process)

    @staticmethod
    def _working_set(environment, asid, lines, name):
        """Map ``lines`` lines of working set at :data:`COMPUTE_VA` in ``asid``; return the
        physical address of each line. The thread has walked it once before the run (the lines
        preloaded in the caches); the hierarchy counts their L2 misses from then on as
        ``name``'s."""
        if not lines:
            return []
        environment.spaces.map(asid, COMPUTE_VA, lines * LINE_BYTES)
        addresses = [environment.spaces.translate(asid, COMPUTE_VA + LINE_BYTES * index)
                     for index in range(lines)]
        numbers = [pa // LINE_BYTES for pa in addresses]
        environment.hierarchy.preload(numbers)
        environment.hierarchy.watch(numbers, name)
        return addresses

    @staticmethod
    def _computing(environment, instructions, lines, name, turns, misses):
        """A compute thread: ``instructions`` a turn, then a load of the next line of its working
        set (``lines``, physical addresses; each pass in an order drawn anew from ``name``), for
        ever; noting when each turn ends and its L2 misses by then."""
        core = environment.core
        watched = environment.hierarchy.watched_misses if lines else {name: 0}
        rng, order = random.Random(name), []
        while True:
            yield Compute(instructions)
            if lines:
                if not order:
                    order = rng.sample(lines, len(lines))
                yield Load(order.pop())
            turns.append(core.cycle)
            misses.append(watched[name])

    def _wait(self, process):
        """Wait for arrivals the process's way, consuming what came."""
        mode = process.spec.notify
        core = process.node.core
        if mode is NotifyMode.NONE:
            if not (yield from self._poll(process)):
                yield Compute(SPIN_INSTRUCTIONS)
        elif mode is NotifyMode.LOCK:
            tail = yield MmioRead(msglib.register(process.endpoint, UserReg.RING_TAIL))
            woken = core.cycle
            if tail == process.receiver.head:
                yield from msglib.wait_lock(LOCK_VA)
                process.signals += 1
                woken = core.cycle
                tail = yield MmioRead(msglib.register(process.endpoint, UserReg.RING_TAIL))
            while process.receiver.head != tail:
                yield from self._consume(process, None, woken)
        else:
            yield Compute(SPIN_INSTRUCTIONS)

    def _poll(self, process):
        """Read RING_TAIL and consume every entry up to it; return whether there was one."""
        core = process.node.core
        tail = yield MmioRead(msglib.register(process.endpoint, UserReg.RING_TAIL))
        if tail == process.receiver.head:
            return False
        notified = core.cycle
        while process.receiver.head != tail:
            yield from self._consume(process, notified, core.cycle)
        return True

    def _consume(self, process, notified, handler_cycle):
        """Consume the entry at the head (NONE and LOCK: the main thread reads in order)."""
        entry = yield from process.receiver.consume()
        self._consumed(process, entry, notified, handler_cycle)
        if process.spec.notify is NotifyMode.LOCK and self._notified.get(entry["metadata"]):
            # The message's signal: taken by the WAIT that woke the thread, else waited for
            # now (it follows the entry at once, and would otherwise stay in the lock's count).
            if process.signals:
                process.signals -= 1
            else:
                yield from msglib.wait_lock(LOCK_VA)
        if process.spec.work:
            yield Compute(process.spec.work)

    def _consumed(self, process, entry, notified, handler_cycle):
        message_id = entry["metadata"]
        if message_id not in self.records or message_id in self.entries:
            # Not a message of the scenario, or one consumed before: the NI delivered wrongly.
            self.strays.append((process.spec.name, entry))
            return
        self.entries[message_id] = entry
        record = self.records[message_id]
        record["status"] = MessageStatus[entry["status"].name]
        if notified is not None:
            self.stamp(message_id, "t_notified", notified)
        self.stamp(message_id, "t_handler", handler_cycle)
        self.stamp(message_id, "t_consumed", process.node.core.cycle)

    def describe_rings(self, node):
        """One line per process of node ``node``: how far it has consumed its ring (for a run
        that stalls)."""
        lines = []
        for process in self.processes.values():
            if process.spec.node != node:
                continue
            head = process.receiver.head if process.spec.notify in (
                NotifyMode.NONE, NotifyMode.LOCK) else process.head
            lines.append(f"{process.spec.name} ({process.spec.notify.name}, ep{process.endpoint}):"
                         f" head {head}, consumed out of order {sorted(process.consumed)}")
        return "; ".join(lines)

    @staticmethod
    def _handler_pc(process):
        return HANDLER_PC + HANDLER_STRIDE * process.endpoint

    def _handler_for(self, process):
        def handler(entry_va):
            return self._handler(process, entry_va)
        return handler

    def _handler(self, process, entry_va):
        """BRANCH, SPAWN and INTERRUPT: consume the entry at ``entry_va`` (the Notifier's
        pointer)."""
        first = process.node.core.cycle
        index = (entry_va - process.ring.va) // COMPLETION_BYTES
        pa = process.ring.pa + index * COMPLETION_BYTES
        # The entry is read where the Notifier pointed; the head moves over every entry
        # consumed so far in ring order (handlers of a SPAWN endpoint may finish out of order).
        entry = yield from msglib.load_entry(pa)
        process.consumed.add(index)
        head = process.head
        while head % process.ring.entries in process.consumed:
            process.consumed.discard(head % process.ring.entries)
            head = (head + 1) & 0xFFFF
        if head != process.head:
            process.head = head
            yield from msglib.write_head(process.endpoint, head)
        self._consumed(process, entry, None, first)
        if process.spec.work:
            yield Compute(process.spec.work)

    def _send(self, process, message):
        spec = process.spec
        dst = self.processes[message.dst]
        words = [message.payload_word(i) for i in range(message.bytes // FLIT_BYTES)]
        endpoint = spec.endpoint if message.endpoint is None else message.endpoint
        fields = dict(dst_node=dst.spec.node if message.dst_node is None else message.dst_node,
                      dst_endpoint=dst.spec.endpoint,
                      remote_va=dst.spec.window.va + message.va_offset, key=message.key,
                      metadata=message.id, notify=message.notify, flags=message.flags,
                      length=message.length)
        node = process.node
        # (the send starts with the payload: a DMA send's is stored into the send buffer first)
        self.stamp(message.id, "t_start", node.core.cycle)
        # The main thread consumes its arrivals itself (NONE, LOCK): it polls its ring while its
        # send is under way, or two processes whose sends wait for each other's full rings would
        # wait for ever. Handlers consume for BRANCH, SPAWN and INTERRUPT.
        consume = None
        if spec.notify in (NotifyMode.NONE, NotifyMode.LOCK):
            consume = functools.partial(self._poll, process)
        if message.send == "dma":
            base = spec.send_buffer.va if message.local_va is None else message.local_va
            if message.local_va is None:
                for index, word in enumerate(words):
                    pa = node.spaces.translate(process.asid, base + FLIT_BYTES * index)
                    self.sent_memory[spec.node].write_word(pa, word)
                    # (a line "in DRAM" was written there long before: no cache holds it, and
                    # the sender spends nothing on it)
                    if message.payload == "dram" or (message.payload == "mixed"
                                                     and not pa // LINE_BYTES % 2):
                        node.hierarchy.place_in_dram(pa, word)
                    else:
                        yield Store(pa, word)
            if fields["length"] is None:
                fields["length"] = message.bytes
            code = msglib.send(endpoint, dma=True, local_va=base, while_busy=consume, **fields)
        else:
            code = msglib.send(endpoint, payload=words, while_busy=consume, **fields)
        self.stamp(message.id, "t_call", node.core.cycle)
        self.sending[(spec.node, endpoint)] = message.id
        record = self.records[message.id]
        try:
            error = yield from code
        except msglib.MmioError as refusal:
            # The NI refused an MMIO write: another process's endpoint (or a bug).
            record["status"] = MessageStatus[f"REFUSED_{refusal.status.name}"]
            return
        self.stamp(message.id, "t_sent", node.core.cycle)
        if error.name != "NONE":
            record["status"] = MessageStatus[f"REFUSED_{error.name}"]
        elif record["status"] is MessageStatus.PLANNED:
            record["status"] = MessageStatus.SENT

