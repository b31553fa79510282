"""The N-node system testbench: behavioural nodes on the RTL :class:`rtl.ni.System`, a scenario's
processes running on them, scored by the reference NIs.

Each node's core, OS and memory sit on its NI's ports (:class:`tb.node_side.NodeSide`); a
:class:`behavioral.workload.Workload` runs the scenario's processes with the message library.
:class:`SystemTB` only wires the parts: the node sides report what each NI takes and answers, and
monitors on the links between the NIs and the Fabric and on each NI's completions report what
they carry, to the :class:`tb.system_scoreboard.SystemScoreboard` (the reference NIs and the
checks, described there) and its :class:`tb.system_scoreboard.LatencyRecorder`.

Per-message cycle stamps (:attr:`SystemTB.records`): ``t_doorbell`` (the NI takes the DOORBELL
write), ``t_first_flit`` and ``t_last_flit_out`` (the first and last flit enter the Fabric),
``t_first_flit_in`` and ``t_last_flit_in`` (the first and last flit leave it into the
receiver's NI), ``t_completion`` (the receiver's NI hands the completion to its
Notifier), ``t_notified`` (the event reaches the core: the lock release, the BRANCH or SPAWN
event, the interrupt the OS takes, or the poll that found the entry), ``t_handler`` (the first
instruction of the code that consumes the entry: the handler, or the thread after its lock wait
or poll).
"""

import itertools
import math
from collections import Counter

from cocotb.triggers import ClockCycles

from behavioral.workload import MessageStatus, Workload, compute_misses, compute_rate
from rtl.layouts import (FLIT_DATA_BITS, MAX_MESSAGE_FLITS, NOTIFIER_COUNTERS, RX_COUNTERS,
                         TX_COUNTERS, Flit, LinkFault, LinkFaultKind, NiTunable, codec)
from rtl.msgbuf import LineState, _Client
from rtl.receiver import STATES as _RECEIVE_STATES
from rtl.sendchecker import STATES as _CHECK_STATES
from rtl.txengine import STEPS as _STEPS
from rtl.writer import STATES as _WRITE_STATES, Part as _Part

from .component_tb import ComponentTB
from .node_side import NodeSide
from .progress import ProgressReport
from .system_scoreboard import LatencyRecorder, SystemScoreboard

__all__ = ["SystemTB"]


class _LinkMonitor:
    """Collects the flits of one Fabric port into messages, and counts the flits taken and the
    cycles a flit was offered and not taken (``held``)."""

    def __init__(self, on_message):
        self.flits = []
        self.first = None
        self.on_message = on_message
        self.taken = self.held = 0

    def hold(self, now):
        self.held += 1

    def transfer(self, payload, now):
        self.taken += 1
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
    backpressure, memory_jitter : int
        For every node side (see :class:`tb.node_side.NodeSide`).
    link_fault_percent : float
        In a system built with ``link_faults``: the chance, per message out of the Fabric, that
        the next message into that NI gets a random :data:`rtl.layouts.LinkFault`.
    """

    def __init__(self, dut, *, seed, scenario, tlb_prefill=True, core_params=None,
                 os_params=None, hierarchy_params=None, driver_params=None, lockstep=False,
                 backpressure=0, memory_jitter=0, link_fault_percent=0):
        super().__init__(dut, seed=seed)
        self.scenario = scenario
        ni_params = {name: self.params[name] for name in
                     ("endpoints", "contexts", "tlb_entries", "asid_bits") if name in self.params}
        self.nodes = {index: NodeSide(self, index, core_params=core_params, os_params=os_params,
                                      hierarchy_params=hierarchy_params,
                                      driver_params=driver_params, lockstep=lockstep,
                                      backpressure=backpressure, memory_jitter=memory_jitter)
                      for index in range(self.params.get("nodes", 2))}
        for side in self.nodes.values():
            for name, value in scenario.tune.items():
                side.driver.tune(NiTunable[name.upper()], value)
        self.workload = Workload(scenario, self.nodes, tlb_prefill=tlb_prefill)
        self.records = self.workload.records
        self.recorder = LatencyRecorder(self.workload)
        self.scoreboard = SystemScoreboard(
            self.workload, self.recorder,
            {index: _page_table(node) for index, node in self.nodes.items()}, ni_params)
        self.mismatches = self.scoreboard.mismatches
        board = self.scoreboard
        self.link_fault_percent = link_fault_percent
        self.link_faults = {}
        # Per node, the monitors of its links out of its NI and into it.
        self.links = {}
        for index in self.nodes:
            # The links between the NIs and the Fabric are wires of the top module; the
            # completions inside each NI are made public for this (tb.runner.PUBLIC_INSIDE).
            sent = _LinkMonitor(lambda flits, first, last, node=index: board.on_sent(
                node, flits, first, last))
            self.ports.monitor(dut, f"ni{index}__link_tx", on_transfer=sent.transfer,
                               on_held=sent.hold)
            faults = self.params.get("link_faults")

            def into_ni(flits, first, last, node=index, faults=faults):
                if not faults:      # what enters the NI is what left the Fabric
                    board.on_fabric_out(node, flits, first, last)
                board.on_arrived(node, flits, first, last)

            arrived = _LinkMonitor(into_ni)
            self.links[index] = sent, arrived
            if faults:
                self.link_faults[index] = self.ports.source(
                    dut, f"link_fault__{index}", on_accept=lambda payload, offered, taken,
                    node=index: board.on_link_fault(node, payload, taken))
                self.ports.monitor(dut, f"ni{index}__from_fabric", on_transfer=_LinkMonitor(
                    lambda flits, first, last, node=index: self._from_fabric(
                        node, flits, first, last)).transfer)
            self.ports.monitor(dut, f"ni{index}__link_rx", on_transfer=arrived.transfer,
                               on_held=arrived.hold)
            self.ports.monitor(getattr(dut, f"ni{index}").notifier, "completion",
                               on_transfer=lambda payload, now, node=index:
                               board.on_completion(node, payload, now))
        self.progress = ProgressReport(total=len(scenario.messages))

    def _from_fabric(self, node, flits, first, last):
        """A message left the Fabric for node ``node``'s injector: score it, and perhaps have
        the injector damage a later one."""
        self.scoreboard.on_fabric_out(node, flits, first, last)
        port = self.link_faults[node]
        if not port.busy and self.rng.random() * 100 < self.link_fault_percent:
            port.send([codec(LinkFault).pack(
                kind=self.rng.choice(list(LinkFaultKind)),
                flit=self.rng.randrange(min(len(flits) + 1, MAX_MESSAGE_FLITS)),
                bit=self.rng.randrange(FLIT_DATA_BITS))])

    # What the node sides report (tb.node_side.NodeSide calls these) ----------------------------

    def mmio_taken(self, node, payload, now):
        self.scoreboard.on_mmio(node, payload, now)

    def check_mmio_answer(self, node, status, data):
        self.scoreboard.on_mmio_answer(node, status, data)

    def os_command_taken(self, node, payload, now):
        self.scoreboard.on_os_command(node, payload)

    def fault(self, node, fields, now):
        self.scoreboard.on_fault(node, fields)

    def notified(self, node, kind, fields, now):
        self.recorder.on_event(node, kind, fields, now)

    # Running and checking ----------------------------------------------------------------------

    def accounted(self):
        """Return whether every message is settled and every completion entry the models
        predict is written."""
        settled = self.scoreboard.settled
        if self.progress.due():
            speed = self.speed()
            self.progress.update(sum(map(settled, self.scenario.messages)),
                                 speed["cycles"], speed["cycles_per_s"])
        if not all(map(settled, self.scenario.messages)):
            return False
        return all(self._rx_written(node) >= self.scoreboard.expected_written[node]
                   for node in self.nodes)

    def _counters(self, unit="rx", names=RX_COUNTERS):
        """Return the counters ``count_<unit>_<name>`` of every node's NI: node -> name ->
        count."""
        return {node: {name: int(getattr(self.dut, f"node__{node}__count_{unit}_{name}").value)
                       for name in names} for node in self.nodes}

    def _rx_written(self, node):
        return sum(int(getattr(self.dut, f"node__{node}__count_rx_{name}").value)
                   for name in ("delivered", "rejected"))

    async def run(self, timeout_cycles, quiet_cycles=200, stall_cycles=None):
        """Run the scenario until every message is settled, then ``quiet_cycles`` more (a late
        duplicate, a stray write or completion shows up there); then check the memory, the
        landing pages of what was not delivered, the entries, the faults and that nothing
        predicted is left, and finish the records. The first mismatch ends the run early (what
        it withholds from the models would stall it), with the checks that need no memory. The
        run fails after ``timeout_cycles``, or once ``stall_cycles`` pass with no message sent,
        arrived or consumed."""
        await self.wait_until(lambda: self.mismatches or self.accounted(), timeout_cycles,
                              self._stalled, progress=self._progress,
                              stall_cycles=stall_cycles or timeout_cycles)
        if self.mismatches:
            return
        await ClockCycles(self.dut.clk, quiet_cycles)
        load = lambda node, pa: self.nodes[node].load(pa)     # noqa: E731
        await self.scoreboard.check_memory(load)
        await self.scoreboard.check_landing(load)
        self.scoreboard.check_end({node: self._rx_written(node) for node in self.nodes},
                                  int(self.dut.fabric_dropped.value), self._counters())

    def _progress(self):
        """What grows as the run goes on: messages sent, arrived and consumed."""
        counts = self.scoreboard.counts
        return counts["messages_sent"], counts["messages_arrived"], len(self.workload.entries)

    def _stalled(self):
        """What a run that did not finish waits for: the messages not settled, and what each
        node holds (its threads, its OS, its NI's counters, where its NI's engines, message
        buffer and Notifier are)."""
        lines = [self.scoreboard.unsettled()]
        for node, side in self.nodes.items():
            counters = {f"{unit}_{name}": int(getattr(self.dut, f"node__{node}__count_{unit}_"
                                                                f"{name}").value)
                        for unit, names in (("tx", TX_COUNTERS), ("rx", RX_COUNTERS),
                                            ("notify", NOTIFIER_COUNTERS))
                        for name in names}
            lines.append(f"{side.describe()}; NI counters {counters}; rings as consumed: "
                         f"{self.workload.describe_rings(node)}; "
                         f"{self.scoreboard.describe_node(node)}; "
                         f"{_describe_ni(getattr(self.dut, f'ni{node}'))}")
        return "\n".join(lines)

    def check(self):
        self.scoreboard.check()

    def summary(self):
        """Return the run's summary: deliveries, errors by kind, messages written without a
        notification and not consumed when the run settled, mismatches, speed, the NIs' RX and
        TX counters, the ports' and the links' counts, and per node its OS's counters and how
        many of the interrupt path's lines its caches hold."""
        statuses = Counter(record["status"] for record in self.records.values())
        errors = {status: count for status, count in statuses.items()
                  if status not in (MessageStatus.DELIVERED, MessageStatus.SENT,
                                    MessageStatus.PLANNED)}
        nodes = {node: {"ports": dict(side.counts), "os_received": _named(side.os.received),
                        "os_delivered": _named(side.os.delivered),
                        "lock_events": _named(side.os.lock_events),
                        "os": dict(side.os.counters),
                        # (of the interrupt path's lines, those the node's caches hold)
                        "kernel_lines_cached": sum(line in side.hierarchy.l1
                                                   or line in side.hierarchy.l2
                                                   for line in side.os.kernel.lines()),
                        "driver": dict(side.driver.counters), "core": dict(side.core.counters)}
                 for node, side in self.nodes.items()}
        # Written without a notification and not yet polled when the run settled: ended too.
        unconsumed = sum(1 for message in self.scenario.messages
                         if self.records[message.id]["status"] == MessageStatus.SENT
                         and self.scoreboard.settled(message))
        # Per node, its links: flits out of its NI into the Fabric and the cycles the Fabric
        # held one back; flits into its NI and the cycles the NI held one back.
        links = {node: {"out_flits": sent.taken, "out_held": sent.held,
                        "in_flits": arrived.taken, "in_held": arrived.held}
                 for node, (sent, arrived) in self.links.items()}
        return {"delivered": statuses.get(MessageStatus.DELIVERED, 0), "errors": errors,
                "written_unconsumed": unconsumed,
                "mismatches": len(self.mismatches), **self.speed(),
                "rx_counters": self._counters(), "tx_counters": self._counters("tx", TX_COUNTERS),
                "counts": dict(self.scoreboard.counts), "nodes": nodes,
                "links": links, "compute": self._compute()}

    def _compute(self):
        """Per node with a compute thread: the instructions it computed; its instructions per
        cycle and its L2 misses per 1,000 instructions while messages were under way (from the
        first send's start to the last handler's first instruction; in a scenario with no
        messages, the whole run; None without two turns of its loop in that stretch); and its
        core's issue width (a lone thread's instructions per cycle with no misses)."""
        starts = [record["t_start"] for record in self.records.values() if "t_start" in record]
        ends = [record["t_handler"] for record in self.records.values()
                if "t_handler" in record]
        if not self.records:
            starts, ends = [0], [math.inf]
        figures = {}
        for node, (instructions, turns, misses) in self.workload.compute.items():
            window = (min(starts), max(ends)) if starts and ends else None
            rate = compute_rate(instructions, turns, *window) if window else None
            missed = compute_misses(instructions, turns, misses, *window) if window else None
            figures[node] = {"instructions": instructions * len(turns),
                             "ipc": None if rate is None else round(rate, 4),
                             "l2_misses_per_kilo": None if missed is None else round(missed, 3),
                             "issue_width": self.nodes[node].core.issue_width}
        return figures


def _describe_ni(ni):
    """Where an NI's engines and message buffer are (from the signals that
    :data:`tb.runner.PUBLIC_INSIDE` makes public), for the report of a run that stalls."""
    def value(unit, name, kind=int):
        return kind(int(getattr(unit, name).value))

    def handshakes(unit, ports):
        return ", ".join(f"{port} valid {value(unit, f'{port}__valid')} ready "
                         f"{value(unit, f'{port}__ready')}" for port in ports)

    rx, tx, buf = ni.rx, ni.tx, ni.msgbuf
    lines = []
    for line in itertools.count():
        if not hasattr(buf, f"state{line}"):
            break
        state = value(buf, f"state{line}", LineState)
        if state != LineState.FREE:
            lines.append(f"{line} {state.name} {value(buf, f'tag{line}'):#x}")
    reader = (f"{value(buf, 'client', _Client).name} of line {value(buf, 'reader_line')}"
              if value(buf, "reader_busy") else "idle")
    flight = {name: value(buf, f"flight_{name}")
              for name in ("tail", "asked", "answered", "filled", "released", "head")}
    filling = value(buf, "flight_fill_line") if value(buf, "flight_filling") else "none"
    writer = rx.writer
    return (f"NI: RX reception {_RECEIVE_STATES[value(rx.receiver, 'receive_state')]}, writer "
            f"{_WRITE_STATES[value(writer, 'write_state')]} (announcing "
            f"{value(writer, 'announce_part', _Part).name}, sending "
            f"{value(writer, 'send_part', _Part).name}, {value(writer, 'lines_ahead')} lines "
            f"ahead), {value(rx.queue, 'free_words')} staging words free; TX "
            f"{_STEPS[value(tx, 'step_state')]} (checker "
            f"{_CHECK_STATES[value(tx.checker, 'check_state')]}); "
            f"message buffer lines [{'; '.join(lines)}], {value(buf, 'rx_used')} used by RX, "
            f"{value(buf.ages, 'count')} in age order, merging "
            f"{value(buf, 'lines_merging'):#x} ({value(buf.merges, 'count')} reads), lines in "
            f"flight (pointers {', '.join(f'{name} {at}' for name, at in flight.items())})"
            f"{' (waits for a line)' if value(buf, 'prep_waits_for_line') else ''}, filling "
            f"{filling}, reader {reader}, "
            f"{handshakes(buf, ('rx_line', 'rx_data', 'ni_read', 'mc_lookup'))}, coh_req valid "
            f"{value(buf, 'coh_req__valid')}, mem_read valid {value(buf, 'mem_read__valid')}; "
            f"Notifier {handshakes(ni.notifier, ('completion', 'event', 'signal', 'os'))}")


def _page_table(node):
    """The OS's answer to a reference NI's TLB miss: node ``node``'s page tables."""
    def translate(asid, va):
        try:
            return node.spaces.lookup(asid, va)
        except (KeyError, LookupError, ValueError):
            return None
    return translate


def _named(counter):
    """A Counter keyed by enum members, as a JSON-friendly dict."""
    return {getattr(key, "name", str(key)): count for key, count in counter.items()}
