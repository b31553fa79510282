"""Testbench of the Fabric: stream drivers on every port, the reference model as scoreboard."""

import random
from functools import partial

from cocotb.triggers import ClockCycles

from behavioral.fabric import FabricModel
from behavioral.message import Message, flit_value
from rtl.layouts import FLIT_BYTES, MAX_NODES, Flit, MessageHeader, codec

from .component_tb import ComponentTB
from .stream import cycle

__all__ = ["FabricTB"]


class _PortStats:
    def __init__(self):
        self.messages = 0
        self.flits = 0
        self.first_cycle = None
        self.last_cycle = None
        self.worst_wait_cycles = 0

    def flit(self, when):
        self.flits += 1
        if self.first_cycle is None:
            self.first_cycle = when
        self.last_cycle = when

    def throughput(self, cycles):
        return self.flits / cycles if cycles else 0.0


class FabricTB(ComponentTB):
    """A stream source per input, a stream sink per output and the
    :class:`~behavioral.fabric.FabricModel` scoreboard, on a :class:`~tb.component_tb.ComponentTB`.

    Parameters
    ----------
    dut : cocotb handle of the ``fabric`` top module
    seed : int or str
        Seed of the testbench's random choices.
    ready_percent, idle_percent : int
        Output backpressure and input bubbles, see :mod:`tb.stream`.
    """

    def __init__(self, dut, *, seed, ready_percent=100, idle_percent=0):
        super().__init__(dut, seed=seed)
        self.nodes = self.params["nodes"]
        self.link_latency = self.params["link_latency"]
        self.cycles_per_flit = self.params["cycles_per_flit"]
        self.model = FabricModel(self.nodes)
        self.inputs = [_PortStats() for _ in range(self.nodes)]
        self.outputs = [_PortStats() for _ in range(self.nodes)]
        self.deliveries = {port: [] for port in range(self.nodes)}   # output -> [src, ...]
        self.latencies = []          # first flit in to first flit out, in cycles
        self._seq = {}
        self._head_cycle = {}        # (src, dst, seq) -> cycle its first flit entered
        self._in_flits = [[] for _ in range(self.nodes)]
        self._out_flits = [[] for _ in range(self.nodes)]
        self.sources = [
            self.ports.source(dut, f"inputs__{port}", on_accept=partial(self._accepted, port),
                              idle_percent=idle_percent, rng=random.Random(f"{seed}-in{port}"))
            for port in range(self.nodes)]
        self.sinks = [
            self.ports.sink(dut, f"outputs__{port}", on_receive=partial(self._received, port),
                            ready_percent=ready_percent, rng=random.Random(f"{seed}-out{port}"))
            for port in range(self.nodes)]

    def message(self, src, dst, payload_bytes):
        """Return a message from ``src`` to ``dst`` with the next sequence number and random
        payload and header fields."""
        seq = self._seq.get((src, dst), 0)
        self._seq[(src, dst)] = (seq + 1) & 0xFFFF
        return Message(dst_node=dst, src_node=src, seq=seq, dst_endpoint=self.rng.randrange(16),
                       key=self.rng.getrandbits(16), remote_va=self.rng.getrandbits(48),
                       metadata=self.rng.getrandbits(64), payload=self.rng.randbytes(payload_bytes))

    def random_message(self, src, *, max_payload_bytes, drop_percent):
        """Return a message to a random node; with ``drop_percent`` chance, to one that does
        not exist (when the Fabric has fewer than 16 ports)."""
        if self.nodes < MAX_NODES and self.rng.random() < drop_percent / 100:
            dst = self.rng.randrange(self.nodes, MAX_NODES)
        else:
            dst = self.rng.randrange(self.nodes)
        payload_bytes = FLIT_BYTES * self.rng.randrange(max_payload_bytes // FLIT_BYTES + 1)
        return self.message(src, dst, payload_bytes)

    def send(self, port, message):
        """Queue ``message`` on input ``port``."""
        self.sources[port].send([flit_value(data, last) for data, last in message.flits()])

    async def drain(self, timeout_cycles):
        """Wait until every queued message has left the Fabric; fail after ``timeout_cycles``."""
        deadline = cycle() + timeout_cycles
        while any(len(source) for source in self.sources) or self.model.outstanding():
            if cycle() >= deadline:
                raise AssertionError(
                    f"traffic did not drain in {timeout_cycles} cycles: "
                    f"{sum(len(s) for s in self.sources)} flits not taken, "
                    f"{self.model.outstanding()} messages not delivered")
            await ClockCycles(self.dut.clk, 16)
        await ClockCycles(self.dut.clk, 4)   # let the drop counter settle

    def check(self):
        """Fail on every mismatch the scoreboard found; return the mismatch count (zero)."""
        mismatches = self.model.finish(int(self.dut.dropped.value))
        assert not mismatches, "; ".join(mismatches[:10])
        return len(mismatches)

    def figures(self):
        """Return the per-port figures of the run so far."""
        speed = self.speed()
        cycles = speed["cycles"]
        return {
            **speed,
            "nodes": self.nodes,
            "link_latency": self.link_latency,
            "cycles_per_flit": self.cycles_per_flit,
            "messages": self.model.sent_messages,
            "delivered": self.model.delivered_messages,
            "dropped": self.model.expected_drops,
            "ports": [{
                "port": port,
                "messages_in": self.inputs[port].messages,
                "flits_in": self.inputs[port].flits,
                "messages_out": self.outputs[port].messages,
                "flits_out": self.outputs[port].flits,
                "throughput_flits_per_cycle": round(self.outputs[port].throughput(cycles), 4),
                "worst_wait_cycles": self.inputs[port].worst_wait_cycles,
            } for port in range(self.nodes)],
        }

    # Monitors ---------------------------------------------------------------------------------

    def _accepted(self, port, payload, offered, accepted):
        data, last = codec(Flit).field(payload, "data"), codec(Flit).field(payload, "last")
        flits = self._in_flits[port]
        stats = self.inputs[port]
        if not flits:
            stats.worst_wait_cycles = max(stats.worst_wait_cycles, accepted - offered)
            self._head_cycle[self._identity(data)] = accepted
        flits.append((data, bool(last)))
        stats.flit(accepted)
        if last:
            stats.messages += 1
            self.model.sent(port, flits)
            self._in_flits[port] = []

    def _received(self, port, payload, when):
        data, last = codec(Flit).field(payload, "data"), codec(Flit).field(payload, "last")
        flits = self._out_flits[port]
        stats = self.outputs[port]
        if not flits:
            first = self._head_cycle.pop(self._identity(data), None)
            if first is not None:
                self.latencies.append(when - first)
        flits.append((data, bool(last)))
        stats.flit(when)
        if last:
            stats.messages += 1
            self.deliveries[port].append(codec(MessageHeader).field(flits[0][0], "src_node"))
            self.model.delivered(port, flits)
            self._out_flits[port] = []

    @staticmethod
    def _identity(first_flit):
        """Identify a message by the (source, destination, sequence) in its first flit."""
        header = codec(MessageHeader)
        return tuple(header.field(first_flit, name) for name in ("src_node", "dst_node", "seq"))
