"""``interrupt-baseline``: what the OS's interrupt path costs, reproduced from the paper's
measurement and carried to the DESIGN's node.

Each point runs the behavioural kernel interrupt path (:mod:`behavioral.kernel`, whose docstring
gives its steps and where their numbers come from) on one node's memory hierarchy, after a user
program has walked a working set of ``working_set`` times the L2's lines (in an order drawn anew
each turn), in the steady state; then the program's next turn counts its refill misses. No RTL
runs: the path is the OS's, and what it costs is its instructions and its cache misses.

* ``machine`` "ultra1": the paper's Ultra-1 (147 MHz, 16 KiB L1, 512 KiB direct-mapped L2,
  ~270 ns a miss, the NI across the SBus);
* ``machine`` "node": the DESIGN's node (32 KiB L1, an 8-way L2 of ``l2_mb`` MiB at 12 cycles,
  DRAM at 60 ns, the NI on the die: a register read 10 ns) at ``core_ghz``.

Figures: ``cycles`` and ``us`` of the interrupt, its ``l2_misses``, the cycles they stalled
(``miss_cycles``, ``miss_share`` of the whole), the rest (``rest_cycles``), the user's
``refill_misses`` afterwards, and each step's cycles and misses (``<step>_cycles``,
``<step>_misses``).

The answer: the Ultra-1's figures beside the paper's (17,500 cycles, 380 misses, 87 %), and what
the same path costs the 2 GHz node with a full L2.
"""

import re

from behavioral.kernel import ON_DIE, STEPS, ULTRA1, InterruptPath
from rtl.layouts import LINE_BYTES

from . import Experiment, page

__all__ = ["InterruptBaseline", "PAPER", "NODE", "step_key"]

#: The paper's measurement (section 1): cycles, L2 misses, the misses' time and share, in us.
PAPER = {"cycles": 17_500, "us": 119.0, "l2_misses": 380, "miss_us": 103.0, "miss_share": 0.87,
         "refill_misses": 380}
#: The DESIGN's node, besides its clock and L2 size.
NODE = {"hierarchy": dict(l1_bytes=32768, l1_ways=4, l1_hit_cycles=2, l2_ways=8,
                          l2_hit_cycles=12, dram_latency_ns=60.0),
        **ON_DIE}
#: (and close to full, where an LRU L2 of 8 ways begins to evict the path's lines: a working set
#: in line order fills 7 ways of each set at 7/8)
_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.875, 0.9375, 1.0)
_CLOCKS = (2.0, 3.0, 4.0, 5.0)
_L2_MB = (4, 8, 16)


def step_key(step):
    """The column prefix of ``step``: its name in lower case, words joined by ``_``."""
    return re.sub(r"[^a-z]+", "_", step.name.lower()).strip("_")


def _machine(point):
    """Return the :class:`InterruptPath` parameters of ``point`` but the working set."""
    if point["machine"] == "ultra1":
        return {**ULTRA1}
    return {**NODE, "core_ghz": point["core_ghz"],
            "hierarchy": {**NODE["hierarchy"], "l2_bytes": point["l2_mb"] << 20}}


class InterruptBaseline(Experiment):
    name = "interrupt-baseline"
    title = ("the OS's network-interrupt path on the node's caches: the paper's Ultra-1 "
             "reproduced, then 2-5 GHz and 4-16 MiB of L2, against the user's working set")
    simulated = False
    parameters = ("machine", "core_ghz", "l2_mb", "working_set")
    figures = ("cycles", "us", "l2_misses", "miss_cycles", "miss_share", "rest_cycles",
               "refill_misses",
               *(f"{step_key(step)}_{what}" for step in STEPS for what in ("cycles", "misses")))

    def points(self, full):
        ultra = [{"machine": "ultra1", "core_ghz": ULTRA1["core_ghz"],
                  "l2_mb": ULTRA1["hierarchy"]["l2_bytes"] / (1 << 20), "working_set": fraction}
                 for fraction in (_FRACTIONS if full else (0.0, 1.0))]
        if not full:
            return ultra + [{"machine": "node", "core_ghz": 2.0, "l2_mb": 4, "working_set": f}
                            for f in (0.0, 1.0)]
        by_set = [{"machine": "node", "core_ghz": 2.0, "l2_mb": mb, "working_set": fraction}
                  for mb in _L2_MB for fraction in _FRACTIONS]
        by_clock = [{"machine": "node", "core_ghz": ghz, "l2_mb": mb, "working_set": 1.0}
                    for mb in _L2_MB for ghz in _CLOCKS if ghz != 2.0]
        return ultra + by_set + by_clock

    def run(self, point, *, sim, seed, label):
        machine = _machine(point)
        l2_lines = int(point["l2_mb"] * (1 << 20)) // LINE_BYTES
        path = InterruptPath(**machine, working_set_lines=round(point["working_set"] * l2_lines),
                             seed=f"{seed}-{label}")
        done = path.measure()
        figures = {"cycles": done.cycles, "us": round(done.cycles / machine["core_ghz"] / 1000, 2),
                   "l2_misses": done.l2_misses, "miss_cycles": done.miss_cycles,
                   "miss_share": round(done.miss_share, 4),
                   "rest_cycles": done.cycles - done.miss_cycles,
                   "refill_misses": done.refill_misses}
        for step, row in zip(STEPS, done.steps):
            figures[f"{step_key(step)}_cycles"] = row["cycles"]
            figures[f"{step_key(step)}_misses"] = row["l2_misses"]
        return figures

    def report(self, rows, directory, *, config):
        from . import plots
        lines = [f"# interrupt-baseline ({config})", ""]
        ultra = {row["working_set"]: row for row in rows if row["machine"] == "ultra1"}
        full = ultra.get(1.0)
        if full is not None:
            ghz = ULTRA1["core_ghz"]
            miss_us = full["miss_cycles"] / ghz / 1000
            lines += ["## The paper's measurement, reproduced", "",
                      f"An interrupt for a minimum-size packet on the {ghz * 1000:g} MHz "
                      f"Ultra-1, user code filling its "
                      f"{ULTRA1['hierarchy']['l2_bytes'] // 1024} KiB L2:", "",
                      "| | cycles | us | L2 misses | miss time (us) | miss share | the rest "
                      "(us) | refill misses after |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |",
                      f"| the paper | {PAPER['cycles']:,} | {PAPER['us']:g} | "
                      f"~{PAPER['l2_misses']} | {PAPER['miss_us']:g} | "
                      f"{PAPER['miss_share']:.0%} | {PAPER['us'] - PAPER['miss_us']:g} | "
                      f"up to {PAPER['refill_misses']} |",
                      f"| this model | {full['cycles']:,} | {full['us']:g} | "
                      f"{full['l2_misses']} | {miss_us:.1f} | {full['miss_share']:.0%} | "
                      f"{full['rest_cycles'] / ghz / 1000:.1f} | {full['refill_misses']} |",
                      "", "Its steps:", "", "| step | cycles | L2 misses |", "| --- | --- | --- |",
                      *(f"| {step.name} | {full[f'{step_key(step)}_cycles']:,} | "
                        f"{full[f'{step_key(step)}_misses']} |" for step in STEPS), ""]
        lines += ["## Against the working set and the clock", "",
                  "| machine | GHz | L2 (MiB) | working set (of the L2) | cycles | us | L2 misses "
                  "| miss share | refill misses |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in rows:
            lines.append(f"| {row['machine']} | {row['core_ghz']:g} | {row['l2_mb']:g} | "
                         f"{row['working_set']:.0%} | {row['cycles']:,} | {row['us']:g} | "
                         f"{row['l2_misses']} | {row['miss_share']:.0%} | "
                         f"{row['refill_misses']} |")
        lines += ["", "## Answer", ""]
        if full is not None:
            lines.append(f"With user code filling the L2, the Ultra-1's interrupt takes "
                         f"{full['cycles']:,} cycles ({full['us']:g} us), {full['l2_misses']} "
                         f"L2 misses {full['miss_share']:.0%} of it (the paper: "
                         f"{PAPER['cycles']:,} cycles, ~{PAPER['l2_misses']} misses, "
                         f"{PAPER['miss_share']:.0%}).")
            empty = ultra.get(0.0)
            if empty is not None:
                lines.append(f"With no user working set in the L2 the same path takes "
                             f"{empty['cycles']:,} cycles: the misses are the cost.")
        node = [row for row in rows if row["machine"] == "node" and row["working_set"] == 1.0
                and row["core_ghz"] == 2.0]
        if node:
            worst = max(node, key=lambda row: row["cycles"])
            lines.append(f"On the 2 GHz node with a full L2 ({worst['l2_mb']:g} MiB) it costs "
                         f"{worst['cycles']:,} cycles ({worst['us']:g} us), "
                         f"{worst['miss_share']:.0%} of them misses.")
        return page(lines, plots.interrupt_baseline(rows, directory, config=config))
