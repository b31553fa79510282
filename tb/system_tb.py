"""The N-node system testbench: behavioural nodes on the RTL :class:`rtl.ni.System`, a scenario's
processes running on them, and the reference NI as the scoreboard.

Each node's core, OS and memory sit on its NI's ports (:class:`tb.node_side.NodeSide`); a
:class:`behavioral.workload.Workload` runs the scenario's processes with the message library.

Scoreboard (monitor -> reference model -> checker): every node has a
:class:`behavioral.refni.ReferenceNI` that is given what the node's NI is given, as the NI takes
it: each user MMIO access (the NI's answer status is checked against the model's), each OS
command, and each message that arrives on the node's link (taken from the Fabric's output). So

* each message a node sends is predicted at its doorbell from the slot's contents (PIO) or from
  what the sender stored (DMA), and the flits on the node's link must rebuild it (the sequence
  number is checked apart: consecutive per source and destination in link order); a refused send
  is predicted with its error, which the sending thread's STATUS must show;
* each message that arrives is predicted: the memory it writes, its completion entry (compared
  with the entry the receiving process consumes, and its stamp with the cycle its last flit came
  in), or the fault that discards it; the faults each node reports must be those predicted;
* at the end, every word the model wrote into a node's memory is loaded back through that
  node's caches and message buffer and compared.

Per-message cycle stamps (:attr:`SystemTB.records`): ``t_doorbell`` (the NI takes the DOORBELL
write), ``t_first_flit`` (the first flit enters the Fabric), ``t_last_flit_in`` (the last flit
leaves it into the receiver's NI), ``t_completion`` (the receiver's NI hands the completion to its
Notifier), ``t_notified`` (the event reaches the core: the lock release, the BRANCH or SPAWN
event, or the poll that found the entry), ``t_handler`` (the first instruction of the code that
consumes the entry: the handler, or the thread after its lock wait or poll).
"""

from collections import Counter, defaultdict, deque
from dataclasses import replace

from behavioral.message import Message, MessageError
from behavioral.refni import ReferenceNI, RxResult
from behavioral.workload import MessageStatus, Workload, settled_without_entry
from rtl.layouts import (FLIT_DATA_BITS, PAGE_BITS, RX_COUNTERS, Completion, Flit, MmioRequest,
                         MmioStatus, NiFaultKind, NiOsOp, NotifyMode, TxError, UserReg, codec,
                         ni_os_command_layout)

from .component_tb import ComponentTB
from .node_side import NodeSide
from .progress import ProgressReport
from .stream import cycle

__all__ = ["SystemTB"]

_WORD_MASK = (1 << FLIT_DATA_BITS) - 1
#: Faults that depend on when the OS answers, not on the message: left out of the comparison.
_TIMING_FAULTS = {NiFaultKind.TX_MISS, NiFaultKind.RX_MISS}


class _Words(dict):
    """Expected memory: physical address -> word, written through ``write_word``."""

    def write_word(self, pa, value):
        self[pa] = value


class _LinkMonitor:
    """Collects the flits of one Fabric port into messages."""

    def __init__(self, on_message):
        self.flits = []
        self.first = None
        self.on_message = on_message

    def transfer(self, payload, now):
        flit = codec(Flit).unpack(payload)
        if not self.flits:
            self.first = now
        self.flits.append((flit["data"], bool(flit["last"])))
        if flit["last"]:
            flits, self.flits = self.flits, []
            self.on_message(flits, self.first, now)


class SystemTB(ComponentTB):
    """A :class:`~behavioral.scenario.Scenario` on the ``system`` design, with the scoreboard.

    Parameters
    ----------
    dut : cocotb handle of the ``system`` top module
    seed : int or str
    scenario : :class:`behavioral.scenario.Scenario`
    tlb_prefill : bool
        See :class:`behavioral.workload.Workload`.
    core_params, os_params, hierarchy_params, driver_params : dict
        For every node's behavioural parts (see :class:`tb.node_side.NodeSide`).
    lockstep : bool
        Step every node's core at every cycle (``smtni run --lockstep``): the oracle of the
        event-driven run, which must give the same records and summary.
    """

    def __init__(self, dut, *, seed, scenario, tlb_prefill=True, core_params=None,
                 os_params=None, hierarchy_params=None, driver_params=None, lockstep=False):
        super().__init__(dut, seed=seed)
        self.scenario = scenario
        self.mismatches = []
        self.counts = Counter()
        self.node_count = self.params.get("nodes", 2)
        ni_params = {name: self.params[name] for name in
                     ("endpoints", "contexts", "tlb_entries", "asid_bits") if name in self.params}
        self.nodes, self.refs = {}, {}
        for index in range(self.node_count):
            node = NodeSide(self, index, core_params=core_params, os_params=os_params,
                            hierarchy_params=hierarchy_params, driver_params=driver_params,
                            lockstep=lockstep)
            self.nodes[index] = node
            self.refs[index] = ReferenceNI(index, nodes=self.node_count,
                                           os_translate=self._page_table(node), **ni_params)
        self.os_codec = codec(ni_os_command_layout(self.params.get("asid_bits", 8)))
        self._statuses = defaultdict(deque)         # node -> predicted MMIO answer statuses
        self._predicted = defaultdict(deque)        # (node, endpoint) -> messages to be sent
        self._refusals = {}                         # message id -> predicted TxError
        self._seq = Counter()                       # (src, dst) -> next sequence number
        self._held = defaultdict(deque)             # node -> messages held for ring space
        self.expected_memory = defaultdict(_Words)  # node -> words the NI writes
        self.expected_entries = {}                  # message id -> entry (stamp left out)
        self._entry_owner = defaultdict(deque)      # (node, entry VA) -> message ids in order
        self.expected_written = Counter()           # node -> entries the NI writes
        self.discarded = set()
        self.rtl_faults = defaultdict(Counter)      # node -> (kind, endpoint, va) counted
        self.events = []                            # (node, cycle, kind, fields)
        for index in self.nodes:
            # The links between the NIs and the Fabric are wires of the top module; the
            # completions inside each NI are made public for this (tb.runner.PUBLIC_INSIDE).
            self.ports.monitor(dut, f"ni{index}__link_tx",
                               on_transfer=_LinkMonitor(self._sent(index)).transfer)
            self.ports.monitor(dut, f"ni{index}__link_rx",
                               on_transfer=_LinkMonitor(self._arrived(index)).transfer)
            self.ports.monitor(getattr(dut, f"ni{index}").notifier, "completion",
                               on_transfer=self._completion(index))
        self.workload = Workload(scenario, self.nodes, tlb_prefill=tlb_prefill)
        self.records = self.workload.records
        self.progress = ProgressReport(total=len(scenario.messages))

    @staticmethod
    def _page_table(node):
        def translate(asid, va):
            try:
                return node.spaces.lookup(asid, va)
            except (KeyError, LookupError, ValueError):
                return None
        return translate

    # What the nodes' drivers report ------------------------------------------------------------

    def fault(self, node, fields, now):
        """A node's NI reported a fault."""
        if fields["kind"] not in _TIMING_FAULTS:
            self.rtl_faults[node][(fields["kind"], fields["endpoint"], fields["va"])] += 1

    def notified(self, node, kind, fields, now):
        """A node's core got a notification, release or OS hand-off."""
        self.events.append((node, now, kind, fields))

    # The reference models' inputs --------------------------------------------------------------

    def mmio_taken(self, node, payload, now):
        """A node's NI took an MMIO access (called by :class:`NodeSide`): the model takes it."""
        fields = codec(MmioRequest).unpack(payload)
        status, _ = self.refs[node].mmio(fields["write"], fields["asid"], fields["addr"],
                                         fields["data"])
        self._statuses[node].append((status, fields))
        offset = fields["addr"] & ((1 << PAGE_BITS) - 1)
        endpoint = fields["addr"] >> PAGE_BITS
        if fields["write"] and status is MmioStatus.OK:
            if offset == UserReg.DOORBELL.value:
                self._doorbell(node, endpoint, now)
            elif offset == UserReg.RING_HEAD.value:
                self._retry_held(node)

    def check_mmio_answer(self, node, status):
        """Compare the NI's answer status with the model's (called in answer order)."""
        expected, fields = self._statuses[node].popleft()
        if MmioStatus(status) is not expected:
            self._mismatch(f"node {node} MMIO {fields}: answered {MmioStatus(status).name}, "
                           f"the model says {expected.name}")

    def os_command_taken(self, node, payload, now):
        """A node's NI took a privileged command (called by :class:`NodeSide`)."""
        fields = self.os_codec.unpack(payload)
        self.refs[node].os_command(**fields)
        if fields["op"] is NiOsOp.WRITE_ENDPOINT:
            self._retry_held(node)

    def _doorbell(self, node, endpoint, now):
        message_id = self.workload.sending.get((node, endpoint))
        if message_id is not None:
            self.workload.stamp(message_id, "t_doorbell", now)
        outcome = self.refs[node].send_next(self.workload.sent_memory[node].read_word)
        if outcome is None:
            self._mismatch(f"node {node} endpoint {endpoint}: doorbell taken, but the model has "
                           f"no send pending")
        elif outcome.error is not TxError.NONE:
            self._refusals[message_id] = outcome.error
        else:
            self._predicted[(node, outcome.endpoint)].append(outcome.message)

    def _sent(self, node):
        def sent(flits, first, last):
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
                self._mismatch(f"node {node} sent {message} at {first}; the model says "
                               f"{expected}")
            pair = (node, message.dst_node)
            if message.seq != self._seq[pair]:
                self._mismatch(f"node {node} -> {message.dst_node}: seq {message.seq}, expected "
                               f"{self._seq[pair]}")
            self._seq[pair] = (message.seq + 1) & 0xFFFF
            if message.metadata in self.records:
                self.workload.stamp(message.metadata, "t_first_flit", first)
        return sent

    def _arrived(self, node):
        def arrived(flits, first, last):
            self.counts["messages_arrived"] += 1
            self._held[node].append((flits, last))
            if len(self._held[node]) == 1:
                self._retry_held(node)
        return arrived

    def _retry_held(self, node):
        """Give the model the messages that arrived, in order, until one is held."""
        held = self._held[node]
        while held:
            flits, last = held[0]
            outcome = self.refs[node].receive(flits)
            if outcome.result is RxResult.HELD:
                return
            held.popleft()
            self._received(node, flits, last, outcome)

    def _received(self, node, flits, last, outcome):
        try:
            message_id = Message.from_flits(flits).metadata
        except MessageError:
            message_id = None
        record = self.records.get(message_id)
        if record is not None:
            self.workload.stamp(message_id, "t_last_flit_in", last)
        if outcome.result is RxResult.DISCARDED:
            self.counts["discarded"] += 1
            if record is not None:
                record["status"] = MessageStatus[f"DISCARDED_{outcome.fault.name}"]
                self.discarded.add(message_id)
            return
        outcome.apply(self.expected_memory[node])
        self.expected_written[node] += 1
        if record is not None:
            self.expected_entries[message_id] = outcome.entry
            record["_entry_va"] = outcome.entry_va
            if outcome.completion is not None:
                self._entry_owner[(node, outcome.entry_va)].append(message_id)

    def _completion(self, node):
        def taken(payload, now):
            entry = codec(Completion).field(payload, "entry")
            owners = self._entry_owner.get((node, entry))
            if not owners:
                self._mismatch(f"node {node}: completion for entry {entry:#x} at {now}, but no "
                               f"message with notify was written there")
                return
            self.workload.stamp(owners.popleft(), "t_completion", now)
        return taken

    # Running and checking ----------------------------------------------------------------------

    def _mismatch(self, text):
        self.mismatches.append(f"cycle {cycle()}: {text}")

    def accounted(self):
        """Return whether every message is settled: refused, discarded, or written by the NI
        and (if it asked to notify) consumed by its receiver."""
        if self.progress.due():
            speed = self.speed()
            self.progress.update(sum(map(self._settled, self.scenario.messages)),
                                 speed["cycles"], speed["cycles_per_s"])
        if not all(map(self._settled, self.scenario.messages)):
            return False
        return all(self._rx_written(node) >= self.expected_written[node] for node in self.nodes)

    def _settled(self, message):
        if settled_without_entry(self.records[message.id]["status"]):
            return True
        if message.id not in self.expected_entries:
            return False
        return not message.notify or message.id in self.workload.entries

    def _rx_written(self, node):
        return sum(int(getattr(self.dut, f"node__{node}__count_rx_{name}").value)
                   for name in ("delivered", "rejected"))

    async def run(self, timeout_cycles):
        """Run the scenario until every message is settled; then check the memory."""
        await self.wait_until(self.accounted, timeout_cycles, self._unsettled)
        await self._check_memory()
        self._check_entries()
        self._check_faults()
        self._finish_records()

    def _unsettled(self):
        waiting = [record for record in self.records.values()
                   if not settled_without_entry(record["status"])
                   and record["id"] not in self.workload.entries]
        return (f"{len(waiting)} messages not settled, first {waiting[:3]}; "
                f"{sum(map(len, self._held.values()))} held for ring space; "
                f"{len(self.workload.strays)} entries of no outstanding message consumed, first "
                f"{self.workload.strays[:1]}")

    async def _check_memory(self):
        for node, words in self.expected_memory.items():
            for pa, value in sorted(words.items()):
                got = await self.nodes[node].load(pa)
                if got != value:
                    self._mismatch(f"node {node} memory {pa:#x}: {got:#x}, the model wrote "
                                   f"{value:#x}")
            self.counts["words_checked"] += len(words)

    def _check_entries(self):
        for process, entry in self.workload.strays:
            self._mismatch(f"process {process} consumed an entry of no outstanding message: "
                           f"{entry}")
        for message_id, entry in self.workload.entries.items():
            expected = self.expected_entries.get(message_id)
            got = {name: value for name, value in entry.items() if name != "stamp"}
            if expected is None or got != {k: v for k, v in expected.items() if k != "stamp"}:
                self._mismatch(f"message {message_id}: entry {got}, the model says {expected}")
            record = self.records[message_id]
            # The stamp is the receiving NI's cycle count when the last flit came in.
            if "t_last_flit_in" in record:
                record["stamp"] = entry["stamp"]
        for message_id, error in self._refusals.items():
            status = self.records[message_id]["status"]
            if status is not MessageStatus[f"REFUSED_{error.name}"]:
                self._mismatch(f"message {message_id}: status {status}, the model refused it "
                               f"with {error.name}")

    def _check_faults(self):
        for node, ref in self.refs.items():
            expected = Counter((fault["kind"], fault["endpoint"], fault["va"])
                               for fault in ref.faults if fault["kind"] not in _TIMING_FAULTS)
            if expected != self.rtl_faults[node]:
                self._mismatch(f"node {node} faults {dict(self.rtl_faults[node])}, the model "
                               f"says {dict(expected)}")

    def _finish_records(self):
        """Add the notification stamps from the cores' events; drop working fields."""
        stamps = [record["stamp"] - record["t_last_flit_in"] for record in self.records.values()
                  if "stamp" in record]
        if len(set(stamps)) > 1:
            self._mismatch(f"completion stamps are not the last flit's cycle at a fixed offset: "
                           f"{sorted(set(stamps))}")
        for record in self.records.values():
            record.pop("stamp", None)
            entry_va = record.pop("_entry_va", None)
            if "t_notified" in record or "t_completion" not in record:
                continue
            dst = self.scenario.processes[record["to"]]
            kinds = {NotifyMode.LOCK: "released", NotifyMode.BRANCH: "notify",
                     NotifyMode.SPAWN: "notify"}
            kind = kinds.get(dst.notify)
            for node, when, event, fields in self.events:
                if (node == dst.node and event == kind and when >= record["t_completion"]
                        and (kind == "released" or fields["entry"] == entry_va)):
                    record["t_notified"] = when
                    break

    def check(self):
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches, first: "
                                     + "; ".join(self.mismatches[:5]))

    def summary(self):
        """Return the run's summary: deliveries, errors by kind, mismatches, speed."""
        statuses = Counter(record["status"] for record in self.records.values())
        errors = {status: count for status, count in statuses.items()
                  if status not in (MessageStatus.DELIVERED, MessageStatus.SENT,
                                    MessageStatus.PLANNED)}
        counters = {node: {name: int(getattr(self.dut, f"node__{node}__count_rx_{name}").value)
                           for name in RX_COUNTERS} for node in self.nodes}
        nodes = {node: {"ports": dict(side.counts), "os_received": _named(side.os.received),
                        "os_delivered": _named(side.os.delivered),
                        "lock_events": _named(side.os.lock_events),
                        "driver": dict(side.driver.counters), "core": dict(side.core.counters)}
                 for node, side in self.nodes.items()}
        return {"delivered": statuses.get(MessageStatus.DELIVERED, 0), "errors": errors,
                "mismatches": len(self.mismatches), **self.speed(),
                "rx_counters": counters, "counts": dict(self.counts), "nodes": nodes}


def _named(counter):
    """A Counter keyed by enum members, as a JSON-friendly dict."""
    return {getattr(key, "name", str(key)): count for key, count in counter.items()}

