"""The message cache's effect: a message of k lines arrives, then a thread reads it.

``python -m tb.msgcache [--sim SIM] [--max-lines K] [--seed S] [--json OUT]``
(``make experiments``) runs the message buffer's ``message_cache_effect`` test twice, with the
buffer keeping arriving lines (its default ``rx_lines``) and with ``rx_lines=0`` (every arriving
line goes straight to memory), and prints, per message size, the DRAM reads and writes and the
memory-bus transfers of arrival plus reading, and the thread's load latency in cycles.
"""

import argparse
import json

from rtl.components import parameters

from .runner import SIMULATORS, build, run
from .testbenches import get_testbench

TEST = "message_cache_effect"


def measure(sim, rx_lines, *, max_lines, seed):
    """Return the rows of the measurement with ``rx_lines`` on ``sim``."""
    bench = get_testbench("msgbuf")
    design = build(bench.component, {"rx_lines": rx_lines}, sim=sim)
    result = run(design, bench.module, seed=seed, options={"max_message_lines": max_lines},
                 label=f"msgcache-{rx_lines}", only=TEST)
    if not result.passed:
        raise SystemExit(f"{sim}, rx_lines={rx_lines}: {result.message or result.tests}; "
                         f"see {result.log}")
    return result.results[TEST]["rows"]


def table(on, off):
    """Return the printed table of the two runs' rows, side by side."""
    columns = ("dram_reads", "dram_writes", "bus_transfers", "first_load_cycles", "load_cycles")
    heads = ("DRAM rd", "DRAM wr", "bus", "1st load", "per load")
    lines = [f"{'':>4}  {'buffer on':^46}  {'buffer off (rx_lines=0)':^46}",
             f"{'k':>4}  " + "  ".join(" ".join(f"{head:>8}" for head in heads) for _ in "ab")]
    for row_on, row_off in zip(on, off):
        lines.append(f"{row_on['k']:>4}  " + "  ".join(
            " ".join(f"{row[column]:>8}" for column in columns) for row in (row_on, row_off)))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.msgcache",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sim", choices=SIMULATORS, default="verilator")
    parser.add_argument("--max-lines", type=int, default=32, help="largest message, in lines")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write both runs' rows to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.max_lines <= 64:
        parser.error(f"--max-lines {args.max_lines} is out of range; give 1 to 64")
    rx_lines = parameters("msgbuf")["rx_lines"]
    on = measure(args.sim, rx_lines, max_lines=args.max_lines, seed=args.seed)
    off = measure(args.sim, 0, max_lines=args.max_lines, seed=args.seed)
    print(f"Message of k 64-byte lines arrives, then one thread loads each of its words "
          f"({args.sim}; DRAM and bus in lines, loads in cycles; buffer on: rx_lines={rx_lines})")
    print(table(on, off))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"on": on, "off": off}, file, indent=1)


if __name__ == "__main__":
    main()
