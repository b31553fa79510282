"""``message-cache``: what the message buffer's keeping of arriving lines saves.

Each point runs the MessageBuffer testbench's ``message_cache_effect`` measurement
(:mod:`tb.msgbuf_tests`) for one message size: a message of ``lines`` 64-byte lines arrives,
then one thread loads each of its words; with the buffer keeping arriving lines (``buffer`` on:
its default ``rx_lines``) or not (off: ``rx_lines = 0``, each arriving line goes to memory as
soon as it is complete). The testbench's memory hierarchy model (2 GHz core, L1 2 cycles, L2
12, DRAM 60 ns) counts DRAM reads and writes and memory-bus transfers (64-byte lines between the
chip and DRAM) of arrival plus reading, and the loads' cycles. Its checks (no stale read, every
line in memory or the buffer) hold on every point.

The answer: the DRAM transfers a kept message saves per line, and how much faster the reader's
first load of a line is.
"""

from rtl.components import parameters

from . import Experiment, PointFailed, page

__all__ = ["MessageCache"]

_TEST = "message_cache_effect"
_FIGURES = ("dram_reads", "dram_writes", "bus_transfers", "read_dram_reads", "first_load_cycles",
            "load_cycles")


class MessageCache(Experiment):
    name = "message-cache"
    title = ("the message buffer keeping arriving lines, on and off: DRAM and bus transfers and "
             "the reader's load latency by message size")
    parameters = ("buffer", "lines")
    figures = ("rx_lines", *_FIGURES)

    def points(self, full):
        sizes = (1, 2, 4, 8, 16, 32) if full else (1, 8)
        return [{"buffer": buffer, "lines": lines} for buffer in ("on", "off") for lines in sizes]

    @staticmethod
    def _params(point):
        return {"rx_lines": parameters("msgbuf")["rx_lines"] if point["buffer"] == "on" else 0}

    def builds(self, points, sim):
        kinds = {point["buffer"]: point for point in points}
        return [("msgbuf", self._params(point)) for point in kinds.values()]

    def run(self, point, *, sim, seed, label):
        from ..runner import build, run
        from ..testbenches import get_testbench
        bench = get_testbench("msgbuf")
        design = build(bench.component, self._params(point), sim=sim)
        result = run(design, bench.module, seed=seed, label=label, only=_TEST,
                     options={"min_message_lines": point["lines"],
                              "max_message_lines": point["lines"]})
        if not result.passed:
            raise PointFailed(f"{result.message or result.tests} (log {result.log})")
        (row,) = result.results[_TEST]["rows"]
        return {"rx_lines": row["rx_lines"], **{figure: row[figure] for figure in _FIGURES}}

    def report(self, rows, directory, *, config):
        from . import plots
        by = {(row["buffer"], row["lines"]): row for row in rows}
        sizes = sorted({row["lines"] for row in rows})
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
        pairs = [(by[("on", k)], by[("off", k)]) for k in sizes
                 if ("on", k) in by and ("off", k) in by]
        lines += ["", "## Answer", ""]
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
        return page(lines, plots.message_cache(rows, directory, config=config))
