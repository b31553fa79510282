"""Testbench of the NI TLB: stream drivers on its five ports, the reference model as scoreboard.

The scoreboard replays the hardware's timing on :class:`behavioral.tlb.TLBModel`: a management
command changes the table ``NITLB.MGMT_LATENCY`` edges after its transfer; a lookup taken at
edge ``t`` compares against the table as it was before that edge; its answer is MISS instead if
the entry it came from is written at an edge from ``t`` until the edge before its response is
taken.
"""

import random
from collections import deque
from functools import partial

from cocotb.triggers import ClockCycles

from behavioral.tlb import TLBModel
from rtl.layouts import (PAGE_BITS, TlbOp, TlbResponse, TlbStatus, codec, tlb_command_layout,
                         tlb_lookup_layout)
from rtl.tlb import NITLB

from .component_tb import ComponentTB
from .stream import cycle

__all__ = ["TLBTB"]

PORTS = ("tx", "rx")


class TLBTB(ComponentTB):
    """A source per request and management port, a sink per response port and the timed
    scoreboard, on a :class:`~tb.component_tb.ComponentTB`.

    Parameters
    ----------
    dut : cocotb handle of the ``tlb`` top module
    seed : int or str
        Seed of the testbench's random choices.
    ready_percent, idle_percent : int
        Response backpressure and request bubbles, see :mod:`tb.stream`.
    """

    def __init__(self, dut, *, seed, ready_percent=100, idle_percent=0):
        super().__init__(dut, seed=seed)
        self.entries = self.params["entries"]
        self.asid_bits = self.params["asid_bits"]
        self.lookup_codec = codec(tlb_lookup_layout(self.asid_bits))
        self.command_codec = codec(tlb_command_layout(self.asid_bits))
        self.model = TLBModel(self.entries, self.asid_bits)
        self.mismatches = []
        self.counts = {status.name: 0 for status in TlbStatus}
        self.counts["stale"] = 0
        self.counts["commands"] = 0
        self.latencies = {port: [] for port in PORTS}
        self.arrivals = {port: [] for port in PORTS}     # edges at which responses were taken
        self._pending_writes = deque()          # (landing edge, command fields)
        self._last_write = [-1] * self.entries   # edge of each entry's latest write
        self._expected = {port: deque() for port in PORTS}
        self.mgmt = self.ports.source(dut, "mgmt", on_accept=self._command_taken)
        self.requests = {
            port: self.ports.source(dut, f"{port}_request",
                                    on_accept=partial(self._request_taken, port),
                                    idle_percent=idle_percent,
                                    rng=random.Random(f"{seed}-{port}-request"))
            for port in PORTS}
        self.responses = {
            port: self.ports.sink(dut, f"{port}_response",
                                  on_receive=partial(self._response_taken, port),
                                  ready_percent=ready_percent,
                                  rng=random.Random(f"{seed}-{port}-response"))
            for port in PORTS}

    # Stimulus -------------------------------------------------------------------------------

    def command(self, op, **fields):
        """Queue a management command (fields as in :func:`rtl.layouts.tlb_command_layout`)."""
        self.mgmt.send([self.command_codec.pack(op=op, **fields)])

    def lookup(self, port, asid, va, key=0):
        """Queue a lookup on ``port`` ("tx" or "rx")."""
        self.requests[port].send([self.lookup_codec.pack(asid=asid, va=va, key=key)])

    async def drain(self, timeout_cycles):
        """Wait until every queued command has completed and every lookup has been answered."""
        deadline = cycle() + timeout_cycles
        while (len(self.mgmt) or any(len(s) for s in self.requests.values())
               or any(self._expected.values())):
            if cycle() >= deadline:
                raise AssertionError(f"the TLB did not answer within {timeout_cycles} cycles: "
                                     f"{sum(map(len, self._expected.values()))} outstanding")
            await ClockCycles(self.dut.clk, 8)
        await ClockCycles(self.dut.clk, NITLB.MGMT_LATENCY + 1)
        self._apply_writes(cycle())

    def check(self):
        """Fail on every mismatch the scoreboard found."""
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches, first: "
                                     + "; ".join(self.mismatches[:5]))

    def figures(self):
        latencies = sorted({l for port in PORTS for l in self.latencies[port]})
        return {
            **self.speed(), "entries": self.entries, "asid_bits": self.asid_bits,
            "lookups": sum(len(self.latencies[port]) for port in PORTS),
            "answers": dict(self.counts), "latency_cycles": latencies,
            "mismatches": len(self.mismatches),
        }

    # Scoreboard -----------------------------------------------------------------------------

    def _apply_writes(self, now):
        """Apply the management commands whose writes landed before edge ``now``."""
        while self._pending_writes and self._pending_writes[0][0] < now:
            landing, fields = self._pending_writes.popleft()
            for index in self.model.execute(**fields):
                self._last_write[index] = landing

    def _command_taken(self, payload, offered, accepted):
        self.counts["commands"] += 1
        self._pending_writes.append((accepted + NITLB.MGMT_LATENCY,
                                     self.command_codec.unpack(payload)))

    def _request_taken(self, port, payload, offered, accepted):
        self._apply_writes(accepted)
        request = self.lookup_codec.unpack(payload)
        answer = self.model.lookup(request["asid"], request["va"], remote=port == "rx",
                                   key=request["key"])
        self._expected[port].append((accepted, request, answer))

    def _response_taken(self, port, payload, when):
        self._apply_writes(when)
        if not self._expected[port]:
            self.mismatches.append(f"{port}: response at cycle {when} without a request")
            return
        taken, request, answer = self._expected[port].popleft()
        status, ppn = answer.status, answer.ppn
        if answer.index is not None and self._last_write[answer.index] >= taken:
            status, ppn = TlbStatus.MISS, 0
            self.counts["stale"] += 1
        got = codec(TlbResponse).unpack(payload)
        self.counts[got["status"].name] += 1
        self.latencies[port].append(when - taken)
        self.arrivals[port].append(when)
        if (got["status"], got["ppn"]) != (status, ppn):
            self.mismatches.append(
                f"{port} lookup asid {request['asid']} vpn {request['va'] >> PAGE_BITS:#x} key "
                f"{request['key']:#x} taken at {taken}: got {got['status'].name} "
                f"{got['ppn']:#x}, expected {status.name} {ppn:#x}")

    # Random workload ------------------------------------------------------------------------

    def random_command(self, pages, keys):
        """Queue a random management command over ``pages`` ((asid, vpn) pairs)."""
        asid, vpn = self.rng.choice(pages)
        op = self.rng.choices(list(TlbOp), weights=[80, 15, 4, 1])[0]
        self.command(op, asid=asid, vpn=vpn, ppn=self.rng.getrandbits(20),
                     perm={"local_read": self.rng.random() < 0.8,
                           "remote_write": self.rng.random() < 0.8},
                     key=self.rng.choice(keys))

    def random_lookup(self, port, pages, keys):
        """Queue a random lookup: mostly pages the workload uses, some other ASIDs' pages."""
        asid, vpn = self.rng.choice(pages)
        if self.rng.random() < 0.1:
            asid = self.rng.randrange(1 << self.asid_bits)
        va = vpn << PAGE_BITS | self.rng.getrandbits(PAGE_BITS)
        self.lookup(port, asid, va, key=self.rng.choice(keys))
