"""``message-cache``: what the message buffer's keeping of arriving lines saves.

Each point runs the MessageBuffer testbench's ``message_cache_effect`` measurement
(:mod:`tb.msgbuf_tests`) for one message size: a message of ``lines`` 64-byte lines arrives,
then one thread loads each of its words; with the buffer keeping arriving lines (``buffer`` on:
its default ``rx_lines``) or not (off: ``rx_lines = 0``, each arriving line goes to memory as
soon as it is complete). The testbench's memory hierarchy model (2 GHz core, L1 2 cycles, L2
12, DRAM 60 ns) counts DRAM reads and writes and memory-bus transfers (64-byte lines between the
chip and DRAM) of arrival plus reading, and the loads' cycles. Its checks (no stale read, every
line in memory or the buffer) hold on every point.

With ``working_set`` "l2" a point is instead the measurement of :mod:`tb.msgcache_tests`: a
program whose working set fills the L2 (on caches of 2 KiB and 16 KiB) walks it after each
message of ``lines`` lines, having read the whole message (``read`` "all") or its first line
("first"); ``buffer`` is then on, off (arriving lines to DRAM) or ``inject`` (off, and each
arriving line written into the L2, as a cache-injecting NI would). Per message, averaged:
``working_set_misses`` (the walk's L2 misses), DRAM reads and writes and bus transfers of the
arrival, the read and the walk, ``l2_injections`` and ``load_cycles`` of the read.

The answer: the DRAM transfers a kept message saves per line, and how much faster the reader's
first load of a line is; with the working set filling the L2, what a message costs it with the
buffer, without it, and with injection.
"""

import statistics

from rtl.components import parameters

from . import Experiment, PointFailed, page

__all__ = ["MessageCache"]

_TEST = "message_cache_effect"
_FIGURES = ("dram_reads", "dram_writes", "bus_transfers", "read_dram_reads", "first_load_cycles",
            "load_cycles")
_WORKING_SET_TEST = "working_set_effect"
_WORKING_SET_FIGURES = ("working_set_misses", "dram_reads", "dram_writes", "bus_transfers",
                        "l2_injections", "load_cycles")
_BUFFERS = ("on", "off", "inject")


class MessageCache(Experiment):
    name = "message-cache"
    title = ("the message buffer keeping arriving lines, on and off: DRAM and bus transfers and "
             "the reader's load latency by message size, and what messages cost a working set "
             "that fills the L2, against delivery to DRAM and into the L2")
    parameters = ("working_set", "buffer", "read", "lines")
    figures = ("rx_lines", *_FIGURES, "working_set_misses", "l2_injections")

    def points(self, full):
        sizes = (1, 2, 4, 8, 16, 32) if full else (1, 8)
        alone = [{"working_set": "none", "buffer": buffer, "read": "all", "lines": lines}
                 for buffer in ("on", "off") for lines in sizes]
        # (quick: a message the program reads the first line of, the case the buffers differ in)
        filled = [{"working_set": "l2", "buffer": buffer, "read": read, "lines": lines}
                  for read in (("all", "first") if full else ("first",))
                  for buffer in _BUFFERS for lines in ((1, 4, 16) if full else (8,))]
        return alone + filled

    @staticmethod
    def _params(point):
        return {"rx_lines": parameters("msgbuf")["rx_lines"] if point["buffer"] == "on" else 0}

    def builds(self, points, sim):
        kinds = {point["buffer"] == "on": point for point in points}
        return [("msgbuf", self._params(point)) for point in kinds.values()]

    def run(self, point, *, sim, seed, label):
        from ..runner import build, run
        from ..testbenches import get_testbench
        bench = get_testbench("msgbuf")
        design = build(bench.component, self._params(point), sim=sim)
        if point["working_set"] == "l2":
            test, module = _WORKING_SET_TEST, "tb.msgcache_tests"
            options = {"min_message_lines": point["lines"],
                       "message_read_lines": 0 if point["read"] == "all" else 1,
                       "inject_into_l2": int(point["buffer"] == "inject")}
        else:
            test, module = _TEST, bench.module
            options = {"min_message_lines": point["lines"], "max_message_lines": point["lines"]}
        result = run(design, module, seed=seed, label=label, only=test, options=options)
        if not result.passed:
            raise PointFailed(f"{result.message or result.tests} (log {result.log})")
        if test == _TEST:
            (row,) = result.results[test]["rows"]
            return {"rx_lines": row["rx_lines"], **{figure: row[figure] for figure in _FIGURES}}
        figures = result.results[test]
        return {"rx_lines": figures["rx_lines"],
                **{figure: round(statistics.mean(row[figure] for row in figures["rows"]), 2)
                   for figure in _WORKING_SET_FIGURES}}

    def report(self, rows, directory, *, config):
        from . import plots
        alone = [row for row in rows if row["working_set"] == "none"]
        filled = [row for row in rows if row["working_set"] == "l2"]
        by = {(row["buffer"], row["lines"]): row for row in alone}
        sizes = sorted({row["lines"] for row in alone})
        heads = ("k", "on: DRAM rd / wr, bus", "first load", "per load",
                 "off: DRAM rd / wr, bus", "first load", "per load")
        lines = [f"# message-cache ({config})", "",
                 "A message of k 64-byte lines arrives, then one thread loads each of its words; "
                 "DRAM and bus transfers in lines, loads in core cycles (2 GHz).", "",
                 "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
        for k in sizes:
            cells = [str(k)]
            for buffer in ("on", "off"):
                row = by.get((buffer, k))
                cells += (["-"] * 3 if row is None else
                          [f"{row['dram_reads']} / {row['dram_writes']}, {row['bus_transfers']}",
                           str(row["first_load_cycles"]), str(row["load_cycles"])])
            lines.append("| " + " | ".join(cells) + " |")
        if filled:
            lines += ["", "## A working set that fills the L2", "",
                      f"A program walks its working set (as many lines as the L2 holds: "
                      f"{_caches()}) after each message of k lines, which it reads "
                      "whole or the first line of. Per message: the walk's L2 misses, and DRAM "
                      "reads / writes and bus transfers of arrival, read and walk. Buffer off: "
                      "arriving lines go to DRAM; inject: they are written into the L2. (LRU "
                      "and a walk in order: a line put in the L2 costs the walk every line of "
                      "its set.)", "",
                      "| read | k | " + " | ".join(f"{buffer}: misses, DRAM rd / wr, bus"
                                                    for buffer in _BUFFERS) + " |",
                      "|" + " --- |" * (2 + len(_BUFFERS))]
            cases = {(row["read"], row["lines"], row["buffer"]): row for row in filled}
            for read, k in sorted({(read, k) for read, k, _ in cases}):
                cells = []
                for buffer in _BUFFERS:
                    row = cases.get((read, k, buffer))
                    cells.append("-" if row is None else
                                 f"{row['working_set_misses']:g}, {row['dram_reads']:g} / "
                                 f"{row['dram_writes']:g}, {row['bus_transfers']:g}")
                lines.append(f"| {read} | {k} | " + " | ".join(cells) + " |")
        lines += ["", "## Answer", ""]
        pairs = [(by[("on", k)], by[("off", k)]) for k in sizes
                 if ("on", k) in by and ("off", k) in by]
        if pairs:
            saved = sum(off["bus_transfers"] - on["bus_transfers"] for on, off in pairs) \
                / sum(on["lines"] for on, _ in pairs)
            on_first = max(on["first_load_cycles"] for on, _ in pairs)
            off_first = min(off["first_load_cycles"] for _, off in pairs)
            lines.append(f"Keeping an arriving message in the buffer saves {saved:g} memory-bus "
                         f"transfers per line (its write to DRAM and its read back), and the "
                         f"reader's first load of a line takes {on_first:g} cycles instead of "
                         f"{off_first:g}.")
        else:
            lines.append("No size was measured with the buffer both on and off.")
        lines += [_working_set_answer(filled)] if filled else []
        return page(lines, [*plots.message_cache(alone, directory, config=config),
                            *plots.working_set(filled, directory, config=config,
                                               caches=_caches())])


def _caches():
    """The working-set measurement's caches, in words."""
    from ..msgcache_tests import WORKING_SET_CACHES as caches
    return (f"{caches['l2_bytes'] // 1024} KiB L2, {caches['l2_ways']} ways, "
            f"{caches['l1_bytes'] // 1024} KiB L1")


def _working_set_answer(rows):
    """The answer's sentence on the working set: per line of message, the misses it costs the
    walk and the bus transfers, per delivery, for each way of reading measured with all three."""
    def per_line(read, buffer, figure):
        chosen = [row for row in rows if row["read"] == read and row["buffer"] == buffer]
        return sum(row[figure] for row in chosen) / sum(row["lines"] for row in chosen)

    clauses = []
    for read, what in (("first", "a message the program reads only the first line of"),
                       ("all", "one it reads whole")):
        if not all(any(row["read"] == read and row["buffer"] == buffer for row in rows)
                   for buffer in _BUFFERS):
            continue
        misses = {buffer: per_line(read, buffer, "working_set_misses") for buffer in _BUFFERS}
        bus = {buffer: per_line(read, buffer, "bus_transfers") for buffer in _BUFFERS}
        clauses.append(f"{what if clauses else what.replace('one it', 'a message the program')}"
                       f" costs it {misses['on']:.2g} L2 misses per line of message with the "
                       f"buffer, {misses['off']:.2g} with delivery to DRAM and "
                       f"{misses['inject']:.2g} with injection into the L2, and "
                       f"{bus['on']:.2g}, {bus['off']:.2g} and {bus['inject']:.2g} bus "
                       f"transfers per line")
    if not clauses:
        return "No working-set case was measured with all three deliveries."
    return f"With a working set that fills the L2, {'; '.join(clauses)}."
