"""The scoreboard of a system run and its latency recorder, apart from the testbench that wires
them to the design (:class:`tb.system_tb.SystemTB`): monitor -> reference model -> checker.

:class:`SystemScoreboard` gives every node's :class:`behavioral.refni.ReferenceNI` what the node's
NI is given, as the NI takes it: each user MMIO access (the NI's answer status is checked against
the model's), each OS command, and each message that arrives on the node's link (taken from the
Fabric's output). So

* each message a node sends is predicted at its doorbell from the slot's contents (PIO) or from
  what the sender stored (DMA), and the flits on the node's link must rebuild it (the sequence
  number is checked apart: consecutive per source and destination in link order); a refused send
  is predicted with its error, which the sending thread's STATUS must show;
* each message that arrives is predicted: the memory it writes, its completion entry (compared
  with the entry the receiving process consumes), or the fault that discards it; the faults each
  node reports must be those predicted;
* at the end, every word the model wrote into a node's memory is loaded back through that
  node's caches and message buffer and compared.

:class:`LatencyRecorder` keeps the per-message cycle stamps (``t_*``, in the workload's records)
and the events the cores got, and at the end adds each message's ``t_notified`` and checks the
completion entries' stamps against the cycles the last flits came in.
"""

import math
from collections import Counter, defaultdict, deque
from dataclasses import replace

from behavioral.message import Message, MessageError, apply_link_fault
from behavioral.refni import ReferenceNI, RxResult
from behavioral.workload import MessageStatus, settled_without_entry
from rtl.layouts import (FLIT_BYTES, PAGE_BITS, Completion, LinkFault, MmioRequest, MmioStatus,
                         NiFaultKind, NiOsOp, NotifyMode, TxError, UserReg, codec,
                         ni_os_command_layout)

from .stream import cycle

__all__ = ["SystemScoreboard", "LatencyRecorder", "ExpectedWords"]

_PAGE_WORDS = (1 << PAGE_BITS) // FLIT_BYTES
#: The longest an MMIO access may wait for its answer at the end of a run.
_MMIO_ANSWER_CYCLES = 1000

#: Faults that depend on when the OS answers, not on the message: left out of the comparison.
_TIMING_FAULTS = {NiFaultKind.TX_MISS, NiFaultKind.RX_MISS}
#: The RX engine's counters of discarded messages, and the fault each counts.
_DISCARD_COUNTERS = {"bad_crc": NiFaultKind.BAD_CRC, "truncated": NiFaultKind.TRUNCATED,
                     "bad_header": NiFaultKind.BAD_HEADER,
                     "bad_endpoint": NiFaultKind.BAD_ENDPOINT, "key_faults": NiFaultKind.RX_KEY,
                     "permission_faults": NiFaultKind.RX_PERMISSION}
#: The core event that notifies a receiver armed with each mode.
_NOTIFY_EVENTS = {NotifyMode.LOCK: "released", NotifyMode.BRANCH: "notify",
                  NotifyMode.SPAWN: "notify", NotifyMode.INTERRUPT: "notify_os"}


class ExpectedWords(dict):
    """Expected memory: physical address -> word, written through ``write_word`` (what
    :meth:`behavioral.refni.RxOutcome.apply` writes into)."""

    def write_word(self, pa, value):
        self[pa] = value


class LatencyRecorder:
    """The cycle stamps of every message of ``workload`` and the events the cores got.

    Parameters
    ----------
    workload : :class:`behavioral.workload.Workload`
        Its records get the stamps.
    """

    def __init__(self, workload):
        self.workload = workload
        self.records = workload.records
        self.events = []                    # (node, cycle, kind, fields)
        self.entry_va = {}                  # message id -> VA of its completion entry
        self.entry_stamp = {}               # message id -> the stamp in its consumed entry

    def stamp(self, message_id, name, when):
        """Message ``message_id`` reached step ``name`` at cycle ``when`` (first time only)."""
        self.workload.stamp(message_id, name, when)

    def on_event(self, node, kind, fields, now):
        """A node's core got a notification, release or OS hand-off."""
        self.events.append((node, now, kind, fields))

    def finish(self, scenario, mismatch):
        """Check the consumed entries' stamps and add ``t_notified`` from the cores' events;
        ``mismatch(text)`` reports a failed check."""
        offsets = {self.entry_stamp[message_id] - record["t_last_flit_in"]
                   for message_id, record in self.records.items()
                   if message_id in self.entry_stamp and "t_last_flit_in" in record}
        if len(offsets) > 1:
            # The stamp is the receiving NI's cycle count when the last flit came in.
            mismatch(f"completion stamps are not the last flit's cycle at a fixed offset: "
                     f"{sorted(offsets)}")
        # Each event notifies one message, between its completion and its handler: a release
        # names no entry, and a thread that WAITs after its lock was signalled is released by
        # none (its WAIT consumes the signal), so the next release is another message's.
        used = set()
        for message_id, record in self.records.items():
            if "t_notified" in record or "t_completion" not in record:
                continue
            dst = scenario.processes[record["to"]]
            kind = _NOTIFY_EVENTS.get(dst.notify)
            latest = record.get("t_handler", math.inf)
            for position, (node, when, event, fields) in enumerate(self.events):
                if (position not in used and node == dst.node and event == kind
                        and record["t_completion"] <= when <= latest
                        and (kind == "released"
                             or fields["entry"] == self.entry_va.get(message_id))):
                    record["t_notified"] = when
                    used.add(position)
                    break


class SystemScoreboard:
    """The reference NIs of a system run, what they predict, and the checks.

    Parameters
    ----------
    workload : :class:`behavioral.workload.Workload`
        The processes: which message each endpoint is sending, what DMA senders stored, the
        records and the entries consumed.
    recorder : :class:`LatencyRecorder`
        Gets the stamps of what the models see happen.
    page_tables : dict
        Node -> ``translate(asid, va)`` (a physical address or None): the OS's answer to the
        model's TLB misses.
    ni_params : dict
        The NIs' parameters the models share (``endpoints``, ``contexts``, ``tlb_entries``,
        ``asid_bits``).

    Attributes
    ----------
    mismatches : list of str
        Every failed check, with its cycle.
    counts : :class:`collections.Counter`
        ``messages_sent``, ``messages_arrived``, ``discarded``, ``words_checked``.
    expected_written : :class:`collections.Counter`
        Node -> completion entries its NI must write.
    """

    def __init__(self, workload, recorder, page_tables, ni_params):
        self.workload = workload
        self.recorder = recorder
        self.records = workload.records
        self.mismatches = []
        self.counts = Counter()
        self.refs = {node: ReferenceNI(node, nodes=len(page_tables), os_translate=translate,
                                       **ni_params)
                     for node, translate in page_tables.items()}
        self._os_codec = codec(ni_os_command_layout(ni_params.get("asid_bits", 8)))
        self._statuses = defaultdict(deque)         # node -> predicted MMIO answer statuses
        self._predicted = defaultdict(deque)        # (node, endpoint) -> messages to be sent
        self._refusals = {}                         # message id -> predicted TxError
        self._seq = Counter()                       # (src, dst) -> next sequence number
        self._held = defaultdict(deque)             # node -> messages held for ring space
        self.expected_memory = defaultdict(ExpectedWords)  # node -> words the NI writes
        self.expected_entries = {}                  # message id -> entry (stamp left out)
        self._entry_owner = defaultdict(deque)      # (node, entry VA) -> message ids in order
        self.expected_written = Counter()
        self._rtl_faults = defaultdict(Counter)     # node -> (kind, endpoint, va) counted
        self._translate = page_tables
        self._in_fabric = defaultdict(deque)        # (src, dst) -> messages the Fabric must give
        self._to_ni = defaultdict(deque)            # node -> (flits, link fault) to its NI
        self._link_faults = defaultdict(dict)       # node -> edge -> fault taken by its injector
        self._ni_took = defaultdict(deque)          # node -> (flits, first, last) not yet paired
        self.fabric_drops = 0                       # messages sent to a node that does not exist
        self._history = defaultdict(list)           # (node, endpoint, UserReg) -> values in turn
        self._floor = Counter()                     # (node, endpoint, UserReg) -> last read's
        for node, ref in self.refs.items():
            self._note_registers(node, range(ref.endpoints))

    def _mismatch(self, text):
        self.mismatches.append(f"cycle {cycle()}: {text}")

    # What the NIs take -----------------------------------------------------------------------

    def on_mmio(self, node, payload, now):
        """Node ``node``'s NI took the MMIO access ``payload`` at edge ``now``."""
        fields = codec(MmioRequest).unpack(payload)
        status, _ = self.refs[node].mmio(fields["write"], fields["asid"], fields["addr"],
                                         fields["data"])
        offset = fields["addr"] & ((1 << PAGE_BITS) - 1)
        endpoint = fields["addr"] >> PAGE_BITS
        register = None
        if not fields["write"] and status is MmioStatus.OK:
            register = (node, endpoint, UserReg(offset))
        # A read may answer any value the register held from the previous read's answer up to
        # now: the model changes at once what the NI changes a few cycles later.
        self._statuses[node].append((status, fields, register,
                                     len(self._history[register]) if register else 0, now))
        if fields["write"] and status is MmioStatus.OK:
            if offset == UserReg.DOORBELL.value:
                self._note_registers(node, [endpoint])
                self._doorbell(node, endpoint, now)
            elif offset == UserReg.RING_HEAD.value:
                self._note_registers(node, [endpoint])
                self._retry_held(node)

    def on_mmio_answer(self, node, status, data=None):
        """Node ``node``'s NI answered an MMIO access with ``status`` and, for a read, ``data``
        (in answer order)."""
        expected, fields, register, upper, _ = self._statuses[node].popleft()
        if MmioStatus(status) is not expected:
            self._mismatch(f"node {node} MMIO {fields}: answered {MmioStatus(status).name}, "
                           f"the model says {expected.name}")
        elif data is not None and register is None and data != 0:
            self._mismatch(f"node {node} MMIO read {fields}: answered {data:#x} with "
                           f"{expected.name}; a read that is not OK answers 0")
        elif data is not None and register is not None:
            floor = self._floor[register]
            held = self._history[register][floor:upper]
            if data in held:
                self._floor[register] = floor + held.index(data)
            else:
                _, endpoint, reg = register
                self._mismatch(f"node {node} endpoint {endpoint} read {reg.name}: {data:#x}; "
                               f"since the last read the model held {[hex(v) for v in held]}")

    def _note_registers(self, node, endpoints):
        """Append the readable registers of ``endpoints`` that changed to their histories."""
        ref = self.refs[node]
        for endpoint in endpoints:
            for reg, value in ref.registers(endpoint).items():
                history = self._history[(node, endpoint, reg)]
                if not history or history[-1] != value:
                    history.append(value)

    def on_os_command(self, node, payload):
        """Node ``node``'s NI took the privileged command ``payload``."""
        fields = self._os_codec.unpack(payload)
        self.refs[node].os_command(**fields)
        self._note_registers(node, range(self.refs[node].endpoints))
        if fields["op"] is NiOsOp.WRITE_ENDPOINT:
            self._retry_held(node)

    def on_fault(self, node, fields):
        """Node ``node``'s NI reported the fault ``fields``."""
        if fields["kind"] not in _TIMING_FAULTS:
            self._rtl_faults[node][(fields["kind"], fields["endpoint"], fields["va"])] += 1

    def _doorbell(self, node, endpoint, now):
        message_id = self.workload.sending.get((node, endpoint))
        if message_id is not None:
            self.recorder.stamp(message_id, "t_doorbell", now)
        outcome = self.refs[node].send_next(self.workload.sent_memory[node].read_word)
        if outcome is not None:
            self._note_registers(node, [outcome.endpoint])
        if outcome is None:
            self._mismatch(f"node {node} endpoint {endpoint}: doorbell taken, but the model has "
                           f"no send pending")
        elif outcome.error is not TxError.NONE:
            self._refusals[message_id] = outcome.error
        else:
            self._predicted[(node, outcome.endpoint)].append(outcome.message)

    # What the links and Notifiers carry ------------------------------------------------------

    def on_sent(self, node, flits, first, last):
        """Node ``node``'s NI sent the message ``flits`` (``(data, last)`` pairs) between edges
        ``first`` and ``last``."""
        self.counts["messages_sent"] += 1
        try:
            message = Message.from_flits(flits)
        except MessageError as error:
            self._mismatch(f"node {node} sent a malformed message at {first}: {error}")
            return
        queue = self._predicted[(node, message.src_endpoint)]
        if not queue:
            self._mismatch(f"node {node} sent {message} at {first}; none was predicted")
            return
        expected = queue.popleft()
        if replace(message, seq=0) != replace(expected, seq=0):
            self._mismatch(f"node {node} sent {message} at {first}; the model says {expected}")
        pair = (node, message.dst_node)
        if message.seq != self._seq[pair]:
            self._mismatch(f"node {node} -> {message.dst_node}: seq {message.seq}, expected "
                           f"{self._seq[pair]}")
        self._seq[pair] = (message.seq + 1) & 0xFFFF
        if message.metadata in self.records:
            self.recorder.stamp(message.metadata, "t_first_flit", first)
            self.recorder.stamp(message.metadata, "t_last_flit_out", last)
        if message.dst_node < len(self.refs):
            self._in_fabric[pair].append(flits)
        else:
            self.fabric_drops += 1

    def on_fabric_out(self, node, flits, first, last):
        """The Fabric gave the message ``flits`` to node ``node`` between edges ``first`` and
        ``last``: it must be the oldest one some node sent to ``node`` and the Fabric still
        holds, unchanged."""
        for src in self.refs:
            queue = self._in_fabric.get((src, node))
            if queue and queue[0] == flits:
                queue.popleft()
                break
        else:
            self._mismatch(f"the Fabric gave node {node} at {first} {_describe(flits)}, which no "
                           f"node sent it (or not in that order)")
        self._to_ni[node].append((flits, self._link_faults[node].pop(first, None)))
        self._pair(node)

    def on_link_fault(self, node, payload, now):
        """The fault injector on the link into node ``node``'s NI took the fault ``payload``
        at edge ``now``, with the first flit of a message."""
        fault = codec(LinkFault).unpack(payload)
        self._link_faults[node][now] = fault
        self.counts[f"link_fault_{fault['kind'].name.lower()}"] += 1

    def on_arrived(self, node, flits, first, last):
        """The message ``flits`` came into node ``node``'s NI, its last flit at edge ``last``:
        it must be the next one out of the Fabric, as the link fault injected (if any) left it.
        (A truncated message ends at the NI before it has all left the Fabric: it waits for
        :meth:`on_fabric_out`.)"""
        self.counts["messages_arrived"] += 1
        self._ni_took[node].append((flits, first, last))
        self._pair(node)

    def _pair(self, node):
        while self._ni_took[node] and self._to_ni[node]:
            flits, first, last = self._ni_took[node].popleft()
            sent, fault = self._to_ni[node].popleft()
            if flits != apply_link_fault(sent, fault):
                self._mismatch(f"node {node}'s NI took at {first} {_describe(flits)}; the Fabric "
                               f"gave {_describe(sent)}, the link fault {fault}")
            self._held[node].append((flits, first, last, sent))
            if len(self._held[node]) == 1:
                self._retry_held(node)

    def on_completion(self, node, payload, now):
        """Node ``node``'s RX engine handed the completion ``payload`` to its Notifier."""
        entry = codec(Completion).field(payload, "entry")
        owners = self._entry_owner.get((node, entry))
        if not owners:
            self._mismatch(f"node {node}: completion for entry {entry:#x} at {now}, but no "
                           f"message with notify was written there")
            return
        self.recorder.stamp(owners.popleft(), "t_completion", now)

    def _retry_held(self, node):
        """Give the model the messages that arrived, in order, until one is held."""
        held = self._held[node]
        while held:
            flits, first, last, sent = held[0]
            outcome = self.refs[node].receive(flits)
            if outcome.result is RxResult.HELD:
                return
            held.popleft()
            self._received(node, sent, first, last, outcome)
            self._note_registers(node, range(self.refs[node].endpoints))

    def _received(self, node, flits, first, last, outcome):
        """The model took the message of ``flits`` (as sent: a link fault may have damaged
        what the NI got; its flits came into the NI from edge ``first`` to ``last``) with
        ``outcome``."""
        try:
            message_id = Message.from_flits(flits).metadata
        except MessageError:
            message_id = None
        record = self.records.get(message_id)
        if record is not None:
            self.recorder.stamp(message_id, "t_first_flit_in", first)
            self.recorder.stamp(message_id, "t_last_flit_in", last)
        if outcome.result is RxResult.DISCARDED:
            self.counts["discarded"] += 1
            if record is not None:
                record["status"] = MessageStatus[f"DISCARDED_{outcome.fault.name}"]
            return
        outcome.apply(self.expected_memory[node])
        self.expected_written[node] += 1
        if record is not None:
            self.expected_entries[message_id] = outcome.entry
            self.recorder.entry_va[message_id] = outcome.entry_va
            if outcome.completion is not None:
                self._entry_owner[(node, outcome.entry_va)].append(message_id)

    # Progress and the end ----------------------------------------------------------------------

    def settled(self, message):
        """Return whether planned ``message`` is settled: refused, discarded, or written by
        its receiver's NI and (if it asked to notify) consumed by its receiver."""
        if settled_without_entry(self.records[message.id]["status"]):
            return True
        if message.id not in self.expected_entries:
            return False
        return not message.notify or message.id in self.workload.entries

    def unsettled(self):
        """Describe what keeps the run from being settled."""
        waiting = [record for record in self.records.values()
                   if not settled_without_entry(record["status"])
                   and record["id"] not in self.workload.entries]
        return (f"{len(waiting)} messages not settled, first {waiting[:3]}; "
                f"{sum(map(len, self._held.values()))} held for ring space; "
                f"{len(self.workload.strays)} entries of no outstanding message consumed, first "
                f"{self.workload.strays[:1]}")

    def describe_node(self, node):
        """Where node ``node``'s messages are in the models: each enabled endpoint's ring head
        and tail, sends doorbelled and not yet out, messages in the Fabric for the node and
        taken by its NI but not yet given to the model."""
        ref = self.refs[node]
        rings = "; ".join(
            f"ep{endpoint} head {registers[UserReg.RING_HEAD]} tail {registers[UserReg.RING_TAIL]}"
            for endpoint in range(ref.endpoints)
            for registers in [ref.registers(endpoint)] if ref.endpoint(endpoint)["enabled"])
        sending = {endpoint: len(queue) for (source, endpoint), queue in self._predicted.items()
                   if source == node and queue}
        in_fabric = {source: len(queue) for (source, dest), queue in self._in_fabric.items()
                     if dest == node and queue}
        return (f"the model's rings: {rings}; doorbelled not sent {ref.pending()}, predicted "
                f"sends by endpoint {sending}; in the Fabric for it by source {in_fabric}; "
                f"out of the Fabric {len(self._to_ni[node])}, taken by the NI "
                f"{len(self._ni_took[node])}")

    async def check_memory(self, load):
        """Load back every word the models wrote (``await load(node, pa)``) and compare."""
        for node, words in self.expected_memory.items():
            for pa, value in sorted(words.items()):
                got = await load(node, pa)
                if got != value:
                    self._mismatch(f"node {node} memory {pa:#x}: {got:#x}, the model wrote "
                                   f"{value:#x}")
            self.counts["words_checked"] += len(words)

    async def check_landing(self, load):
        """Load back whole every page that a message not delivered (discarded, refused or
        rejected) would have landed in, and compare it with what the models wrote there (zero
        where they wrote nothing): nothing of such a message may reach memory."""
        scenario = self.workload.scenario
        pages = set()
        for message in scenario.messages:
            if self.records[message.id]["status"] is MessageStatus.DELIVERED or not message.bytes:
                continue
            dst = scenario.processes[message.dst]
            va = dst.window.va + message.va_offset
            asid = self.workload.asid(message.dst)
            pages.update((dst.node, asid, page) for page in
                         range(va >> PAGE_BITS, ((va + message.bytes - 1) >> PAGE_BITS) + 1))
        for node, asid, page in sorted(pages):
            entry = self._translate[node](asid, page << PAGE_BITS)
            if entry is None:
                continue                    # not mapped: nothing can land there
            expected = self.expected_memory[node]
            for index in range(_PAGE_WORDS):
                pa = entry.ppn << PAGE_BITS | index * FLIT_BYTES
                got = await load(node, pa)
                if got != expected.get(pa, 0):
                    self._mismatch(f"node {node} memory {pa:#x} (ASID {asid} page "
                                   f"{page << PAGE_BITS:#x}, where a message not delivered "
                                   f"would land): {got:#x}, the model says "
                                   f"{expected.get(pa, 0):#x}")
            self.counts["landing_pages_checked"] += 1

    def check_end(self, rx_written, fabric_dropped, rx_counters=None):
        """The checks at the end of a run: nothing predicted is left; ``rx_written`` (node ->
        completion entries its NI wrote), ``fabric_dropped`` (messages the Fabric dropped) and
        the RX engines' discard counters in ``rx_counters`` (node -> name -> count, see
        :data:`rtl.layouts.RX_COUNTERS`) are exactly what the models say; the entries consumed,
        the refusals, the faults."""
        left = {
            "sends predicted, never sent": [message for queue in self._predicted.values()
                                            for message in queue],
            "messages in the Fabric, never given out": [
                _describe(flits) for queue in self._in_fabric.values() for flits in queue],
            "messages out of the Fabric, never taken by the NI": [
                _describe(flits) for queue in self._to_ni.values() for flits, _ in queue],
            "messages the NI took that the Fabric never gave": [
                _describe(flits) for queue in self._ni_took.values() for flits, _, _ in queue],
            "link faults taken with no message": [
                fault for faults in self._link_faults.values() for fault in faults.values()],
            "messages held for ring space at the end": [
                _describe(flits) for queue in self._held.values() for flits, _, _ in queue],
            # The cores poll to the end: an access taken in the last cycles may be on its way.
            f"MMIO accesses not answered {_MMIO_ANSWER_CYCLES} cycles after they were taken": [
                fields for queue in self._statuses.values()
                for _, fields, _, _, taken in queue if cycle() - taken > _MMIO_ANSWER_CYCLES],
            "completions predicted, never given to the Notifier": [
                message_id for queue in self._entry_owner.values() for message_id in queue],
        }
        for what, items in left.items():
            if items:
                self._mismatch(f"{len(items)} {what}; first {items[0]}")
        for node, count in rx_written.items():
            if count != self.expected_written[node]:
                self._mismatch(f"node {node}'s NI wrote {count} completion entries, the model "
                               f"says {self.expected_written[node]}")
        if fabric_dropped != self.fabric_drops:
            self._mismatch(f"the Fabric dropped {fabric_dropped} messages, the model says "
                           f"{self.fabric_drops}")
        for node, counters in (rx_counters or {}).items():
            faults = Counter(fault["kind"] for fault in self.refs[node].faults)
            for name, kind in _DISCARD_COUNTERS.items():
                if counters[name] != faults[kind]:
                    self._mismatch(f"node {node}'s RX engine counted {counters[name]} {name}, "
                                   f"the model {faults[kind]}")
        for message_id, record in self.records.items():
            refused = record["status"].name.removeprefix("REFUSED_")
            if (refused in TxError.__members__ and refused != record["status"].name
                    and self._refusals.get(message_id) is not TxError[refused]):
                self._mismatch(f"message {message_id}: refused with {refused}, the model "
                               f"says {getattr(self._refusals.get(message_id), 'name', 'sent')}")
        for process, entry in self.workload.strays:
            self._mismatch(f"process {process} consumed an entry of no outstanding message: "
                           f"{entry}")
        for message_id, entry in self.workload.entries.items():
            expected = self.expected_entries.get(message_id)
            got = {name: value for name, value in entry.items() if name != "stamp"}
            if expected is None or got != {k: v for k, v in expected.items() if k != "stamp"}:
                self._mismatch(f"message {message_id}: entry {got}, the model says {expected}")
            self.recorder.entry_stamp[message_id] = entry["stamp"]
        for message_id, error in self._refusals.items():
            status = self.records[message_id]["status"]
            if status is not MessageStatus[f"REFUSED_{error.name}"]:
                self._mismatch(f"message {message_id}: status {status}, the model refused it "
                               f"with {error.name}")
        for node, ref in self.refs.items():
            expected = Counter((fault["kind"], fault["endpoint"], fault["va"])
                               for fault in ref.faults if fault["kind"] not in _TIMING_FAULTS)
            if expected != self._rtl_faults[node]:
                self._mismatch(f"node {node} faults {dict(self._rtl_faults[node])}, the model "
                               f"says {dict(expected)}")
        self.recorder.finish(self.workload.scenario, self._mismatch)

    def check(self):
        """Fail with the first mismatches, if any."""
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches, first: "
                                     + "; ".join(self.mismatches[:5]))


def _describe(flits):
    """A message's flits, in a line: the message if they make one, else their count and head."""
    try:
        return str(Message.from_flits(flits))
    except MessageError as error:
        return f"{len(flits)} flits ({error}), first {flits[0][0]:#x}"
