"""``send-buffering``: how many lines the sender's NI must fetch ahead of the wire.

Too few DMA lines fetched ahead and the link idles while a line comes from memory (bubbles
inside a message, which hold the Fabric's wormhole path); too many only add buffering. Each point
is a link rate (``cycles_per_flit``: 32, 16, 8 and 4 cycles a flit, 4, 8, 16 and 32 Gb/s at the
2 GHz core), a depth (``depth``: the DMA lines fetched ahead, set at run time by the OS, TUNE)
and where the payload's lines are when the send starts (``payload``: ``cache``, dirty in the
sender's caches, an L2 hit away; ``dram``, in DRAM alone; ``mixed``, every other line). Every
point runs on one build (``send_buffering = 16``, ``max_cycles_per_flit = 32``) and streams DMA
messages of 256 B, 512 B, 1 KiB and 2 KiB (:data:`SIZES`, two of each, each sent once the last
send call has returned) from node 0 to node 1, scored by the reference NIs. Per size, medians of
its messages:

* ``bubbles_<bytes>``: the cycles a message's flits took on the link out of the sender beyond
  the link's pace (``t_last_flit_out - t_first_flit - (flits - 1) * cycles_per_flit``): 0 when
  no flit waited for memory;
* ``latency_<bytes>``: doorbell to the receiver's handler (``t_handler - t_doorbell``).

and of the whole run:

* ``buffer_lines``: the lines the sender NI's prefetch buffer holds on average while a DMA send
  is under way (words asked for and not yet framed, over 8; from its counters
  ``count_tx_dma_buffer_word_cycles`` and ``count_tx_dma_cycles``), at most ``depth``.

The answer, per link rate and placement: the smallest depth with no bubbles at any size, what
one more line costs in latency at 2 KiB, and the bandwidth-delay estimate beside it: the memory
latency over the cycles a line takes on the link (``latency / (8 * cycles_per_flit)``, rounded
up); and how much of the buffer a send holds there.
"""

import math
import statistics

from behavioral.scenario import parse
from rtl.layouts import FLIT_BYTES, LINE_WORDS, MAX_PAYLOAD_BYTES

from . import Experiment, page, run_scenario

__all__ = ["SendBuffering", "SIZES", "SYSTEM", "document"]

#: The message sizes every point streams, two of each.
SIZES = (256, 512, 1024, 2048)
#: The one System every point runs on.
SYSTEM = {"send_buffering": 16, "max_cycles_per_flit": 32}
_RATES = (32, 16, 8, 4)
_PAYLOADS = ("cache", "dram", "mixed")


def document(point):
    """Return the scenario document of ``point``."""
    return {
        "system": {"nodes": 2, "params": dict(SYSTEM),
                   "tune": {"send_buffering": point["depth"],
                            "cycles_per_flit": point["cycles_per_flit"]}},
        "process": [
            {"name": "sender", "node": 0, "notify": "lock",
             "window": {"va": 0x1000_0000, "bytes": 0x10000, "key": 0x1111},
             "send_buffer": {"va": 0x2000_0000, "bytes": MAX_PAYLOAD_BYTES}},
            {"name": "receiver", "node": 1, "notify": "lock", "ring": 64,
             "window": {"va": 0x1000_0000, "bytes": 0x10000, "key": 0x2222}},
        ],
        "traffic": [{"pattern": "stream", "from": "sender", "to": "receiver", "bytes": size,
                     "send": "dma", "payload": point["payload"], "count": 2}
                    for size in SIZES],
    }


class SendBuffering(Experiment):
    name = "send-buffering"
    title = ("DMA lines fetched ahead (1 to 16) against link rate (4 to 32 Gb/s) and where the "
             "payload is: bubbles on the link, latency, and the smallest depth with no bubbles")
    parameters = ("payload", "cycles_per_flit", "depth")
    figures = (*(f"bubbles_{size}" for size in SIZES), *(f"latency_{size}" for size in SIZES),
               "buffer_lines", "memory_cycles", "cycles")

    def points(self, full):
        if not full:
            # (and lines from DRAM and the caches in one payload, answered in order though
            # their latencies differ)
            return [*({"payload": "dram", "cycles_per_flit": 4, "depth": depth}
                      for depth in (2, 4, 16)),
                    {"payload": "mixed", "cycles_per_flit": 8, "depth": 4}]
        return [{"payload": payload, "cycles_per_flit": rate, "depth": depth}
                for payload in _PAYLOADS for rate in _RATES for depth in range(1, 17)]

    def builds(self, points, sim):
        from .. import cli
        return [("system", cli._system_params(parse(document(points[0]))))] if points else []

    def run(self, point, *, sim, seed, label):
        from .. import cli
        records, summary = run_scenario(document(point), sim=sim, seed=seed, label=label)
        counters = summary["tx_counters"]["0"]
        figures = {"cycles": summary["cycles"], "memory_cycles": _memory_cycles(point["payload"]),
                   "buffer_lines": round(counters["dma_buffer_word_cycles"]
                                         / (LINE_WORDS * counters["dma_cycles"]), 3)}
        for size in SIZES:
            chosen = [record for record in records if record["bytes"] == size]
            flits = cli.message_flits(size)
            figures[f"bubbles_{size}"] = statistics.median(
                record["t_last_flit_out"] - record["t_first_flit"]
                - (flits - 1) * point["cycles_per_flit"] for record in chosen)
            figures[f"latency_{size}"] = statistics.median(
                record["t_handler"] - record["t_doorbell"] for record in chosen)
        return figures

    def report(self, rows, directory, *, config):
        from . import plots
        lines = [f"# send-buffering ({config})", "",
                 "DMA messages of 256 B to 2 KiB streamed from node 0 to node 1; `depth`: the "
                 "DMA lines the sender's NI fetches ahead of the wire (TUNE); bubbles: cycles "
                 "a message took on the link beyond the link's pace (median of its size); "
                 "latency: doorbell to handler at 2 KiB; buffer use: the lines a DMA send holds "
                 "in the sender NI's buffer on average, at that depth.", "",
                 "| payload | link (cycles/flit) | Gb/s | no bubbles from depth | "
                 "bandwidth-delay estimate (lines) | 2 KiB latency there | one more line | "
                 "buffer use there (lines) |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        answers = []
        for payload in _PAYLOADS:
            for rate in _RATES:
                chosen = {row["depth"]: row for row in rows
                          if row["payload"] == payload and row["cycles_per_flit"] == rate}
                if not chosen:
                    continue
                depth = enough(chosen)
                estimate = math.ceil(_memory_cycles(payload) / (LINE_WORDS * rate))
                there = chosen[depth]["latency_2048"] if depth is not None else None
                more = (chosen[depth + 1]["latency_2048"] - there
                        if depth is not None and depth + 1 in chosen else None)
                lines.append(f"| {payload} | {rate} | {gbps(rate):g} | "
                             f"{'-' if depth is None else depth} | {estimate} | "
                             f"{'-' if there is None else there} | "
                             f"{'-' if more is None else f'{more:+g} cycles'} | "
                             f"{'-' if depth is None else chosen[depth]['buffer_lines']} |")
                answers.append((payload, rate, depth, estimate))
        lines += ["", "## Answer", ""]
        for payload, rate, depth, estimate in answers:
            said = (f"{depth} line{'s' if depth > 1 else ''}" if depth is not None
                    else "more than the depths measured")
            lines.append(f"* payload in {payload}, {gbps(rate):g} Gb/s: no bubbles from "
                         f"{said} (bandwidth-delay estimate {estimate}).")
        return page(lines, plots.send_buffering(rows, directory, config=config))


def enough(by_depth):
    """Return the smallest depth of ``by_depth`` (depth -> row) from which no size has bubbles
    at any depth measured, or None."""
    found = None
    for depth in sorted(by_depth, reverse=True):
        if any(by_depth[depth][f"bubbles_{size}"] for size in SIZES):
            break
        found = depth
    return found


def gbps(cycles_per_flit, core_ghz=2.0):
    """The link rate of a flit every ``cycles_per_flit`` cycles at the core clock, in Gb/s."""
    return FLIT_BYTES * 8 * core_ghz / cycles_per_flit


def _memory_cycles(payload):
    """Cycles from a DMA line's read to its data: the dirty L2 copy's, or DRAM's (for every
    other line too, with ``mixed``), of the system testbench's memory model."""
    from behavioral.memory import MemoryHierarchy
    hierarchy = MemoryHierarchy()
    return hierarchy.l2.hit_cycles if payload == "cache" else hierarchy.dram_cycles
