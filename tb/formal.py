"""Formal proofs of smtni's isolation properties (``make formal``, ``python -m tb.formal``).

Each proof is a harness (``tb/formal_<part>.py``, where its properties are written down) run
through SymbiYosys (:mod:`tb.formal_sby`) on the design, and again on deliberately broken
variants of the design, each of which must fail with a counterexample from reset in one of the
properties named for it:

========  =========================================================  ======  ================
proof     what is proven                                             mode    broken variants
========  =========================================================  ======  ================
tlb       NI TLB: a HIT only from a valid entry of the request's     prove   the ASID ignored
          ASID and page that grants the access; none after an
          invalidation until a refill; one response per request,
          on time (:mod:`tb.formal_tlb`)
rx        RX engine: lookups in the arriving endpoint's ASID with    bmc     endpoint 0's ASID
          the message's key; payload written only at the frames            for every
          those lookups hit, nothing of a discarded message                endpoint; key 0;
          (:mod:`tb.formal_rx`)                                            CRC not checked
tx        TX engine: DMA lookups in the doorbell's ASID, DMA lines   bmc     a fixed ASID
          read only in frames they hit (:mod:`tb.formal_tx`)
ni        NI: a user access in another ASID than the endpoint's     prove   RING_HEAD not
          sends nothing, changes no register, answers an error             checked
          (:mod:`tb.formal_ni`)
fabric    Fabric: a flit comes out once, at its destination, held   bmc     a link stage that
          in exactly one register meanwhile; nothing comes out that        overwrites under
          went not in (:mod:`tb.formal_fabric`)                            backpressure
========  =========================================================  ======  ================

``prove`` proofs are unbounded (k-induction). ``bmc`` proofs hold for every trace of ``depth``
cycles from reset; a ``cover`` run of each shows a trace of that depth doing what the proof is
meant to reach (a whole message written, a DMA line read, a flit delivered). tests/test_formal.py
runs every entry at its ``quick_depth`` (smaller depths for the bounded proofs, no covers).

The TX proof found a bug, since fixed: a DMA send of no payload from an unaligned ``local_va``
read a line at a frame that no lookup of the send gave (:mod:`tb.formal_tx`).
"""

import argparse
import os
import sys
from dataclasses import dataclass

from rtl.fabric import Fabric
from rtl.ni import NetworkInterface
from rtl.rxengine import RxEngine
from rtl.tlb import NITLB
from rtl.txengine import TxEngine

from .formal_fabric import FabricDropsUnderBackpressure, FabricProof
from .formal_ni import NiProof, RingHeadWithoutASIDCheck
from .formal_rx import RxEndpointZeroASID, RxIgnoresCRC, RxIgnoresKey, RxProof
from .formal_sby import prove
from .formal_tlb import NoASIDCompare, TLBProof
from .formal_tx import TxFixedASID, TxProof
from .runner import SIM_BUILD

__all__ = ["Proof", "PROOFS", "run"]


@dataclass(frozen=True)
class Proof:
    """One run of a harness on a design: ``fails_in`` empty, it must be proven (``prove``,
    ``bmc``) or every cover reached (``cover``); else it must fail with a counterexample from
    reset in one of those properties."""
    name: str
    harness: type
    design: type
    mode: str
    depth: int
    quick_depth: int | None = None       # tests/test_formal.py; None: not run there
    fails_in: frozenset = frozenset()

    def run(self, *, quick=False, workdir=None):
        """Run the proof (at ``quick_depth`` if ``quick``); return the
        :class:`~tb.formal_sby.ProofResult`."""
        return prove(self.harness(self.design), mode=self.mode,
                     depth=self.quick_depth if quick else self.depth,
                     workdir=workdir or SIM_BUILD / "formal" / self.name)

    def judge(self, result):
        """Return ``(as_expected, verdict)`` for ``result``, the verdict a line of text."""
        names = ", ".join(result.failed) or "-"
        if self.fails_in:
            caught = result.status == "FAIL" and bool(self.fails_in & set(result.failed))
            verdict = (f"counterexample in {names}" if result.status == "FAIL"
                       else f"{result.status} (no counterexample)")
            return caught, verdict
        if result.status == "PASS":
            return True, {"prove": "proven", "bmc": "no counterexample",
                          "cover": "every cover reached"}[self.mode]
        return False, f"{result.status}: {names}"


def _broken(name, harness, design, mode, depth, quick_depth, *fails_in):
    return Proof(name, harness, design, mode, depth, quick_depth, frozenset(fails_in))

#: Every proof, broken variant and cover run, in the order ``make formal`` runs them.
PROOFS = (
    Proof("tlb", TLBProof, NITLB, "prove", 6, 6),
    _broken("tlb-no-asid-compare", TLBProof, NoASIDCompare, "prove", 6, 6,
            "matched-entry-maps-request", "hit-is-granted"),
    Proof("ni", NiProof, NetworkInterface, "prove", 3, 3),
    _broken("ni-ring-head-without-asid-check", NiProof, RingHeadWithoutASIDCheck, "prove", 3, 3,
            "foreign-access-changes-no-register", "foreign-access-answers-error"),
    Proof("rx", RxProof, RxEngine, "bmc", 12, 6),
    Proof("rx-cover", RxProof, RxEngine, "cover", 12),
    _broken("rx-endpoint-zero-asid", RxProof, RxEndpointZeroASID, "bmc", 12, 6,
            "lookup-in-endpoint-asid"),
    _broken("rx-ignores-key", RxProof, RxIgnoresKey, "bmc", 12, 6, "lookup-with-message-key"),
    _broken("rx-ignores-crc", RxProof, RxIgnoresCRC, "bmc", 12, 6,
            "writes-only-accepted-messages", "writes-only-translated-frames"),
    Proof("tx", TxProof, TxEngine, "bmc", 12, 9),
    Proof("tx-cover", TxProof, TxEngine, "cover", 12),
    _broken("tx-fixed-asid", TxProof, TxFixedASID, "bmc", 12, 9, "lookup-in-doorbell-asid"),
    Proof("fabric", FabricProof, Fabric, "bmc", 20, 12),
    Proof("fabric-cover", FabricProof, Fabric, "cover", 20),
    _broken("fabric-drops-under-backpressure", FabricProof, FabricDropsUnderBackpressure, "bmc",
            20, 12, "held-once-until-delivered", "nothing-out-that-was-not-put-in"),
)


def run(proofs, *, quick=False, out=sys.stdout):
    """Run ``proofs`` one after the other, printing a line for each; return whether every one
    went as expected."""
    all_expected = True
    for proof in proofs:
        result = proof.run(quick=quick)
        as_expected, verdict = proof.judge(result)
        all_expected &= as_expected
        depth = proof.quick_depth if quick else proof.depth
        mark = "" if as_expected else "  <-- unexpected"
        print(f"{proof.name:34} {proof.mode:5} {depth:2}  {result.seconds:6.1f} s  {verdict}"
              f"  (log {os.path.relpath(result.log)}){mark}",
              file=out, flush=True)
    return all_expected


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.formal",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="proofs to run (default: all): " + ", ".join(p.name for p in PROOFS))
    parser.add_argument("--quick", action="store_true",
                        help="the depths of tests/test_formal.py; skip the cover runs")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {proof.name for proof in PROOFS}
    if unknown:
        parser.error(f"no proof named {', '.join(sorted(unknown))}")
    proofs = [proof for proof in PROOFS if (not args.names or proof.name in args.names)
              and not (args.quick and proof.quick_depth is None)]
    return 0 if run(proofs, quick=args.quick) else 1


if __name__ == "__main__":
    sys.exit(main())
