"""``pio-dma``: at what message size DMA becomes better than PIO, with and without a compute
thread sharing the sender's SMT core.

A point is a message size, PIO or DMA, a System of ``contexts`` SMT contexts a core, and with
``compute`` 1 a thread on the sender's core (node 0) that computes in a loop all the while
(``[[compute]]``). The sender and the receiver (node 1) wait on their notification lock (LOCK).
A DMA send stores its payload into the sender's send buffer first (the NI reads it from there);
a PIO send writes the words to the NI. Each point runs twice, each run checked by the
reference-NI scoreboard:

* unloaded, a ping-pong of :data:`ROUND_TRIPS` round trips (each side sends the next message
  once it has consumed the last), for the messages from node 0 to node 1:

  * ``oneway_cycles``: from the start of the send (``t_start``) to the receiver's handler's
    first instruction (``t_handler``); ``oneway_ready_cycles``: from the call of the send, the
    payload in place (``t_call``: for DMA, as if the payload were in memory already);
    ``doorbell_cycles``: from the doorbell;
  * ``sender_cycles``: the sending thread's cycles from the start of the send until its send
    call returns (``t_sent``), its occupancy; ``sender_ready_cycles``: from the call;

* at saturation, a stream of messages from node 0 to node 1, each sent as soon as the send call
  of the one before has returned:

  * ``messages_per_us``: messages handled per microsecond at the 2 GHz core clock, from the
    first measured handler start to the last;
  * ``compute_ipc``: the compute thread's instructions per cycle from the first send's start to
    the last handler's; ``issue_width``: its IPC alone (a lone thread takes every issue slot).

Figures are medians over the messages after the first :data:`WARM_UP` of a run. In the report,
``weighted_speedup`` is the stream's messages per microsecond over the best of PIO and DMA at
the same size with no compute thread, plus the compute thread's IPC over its IPC alone: the
core's throughput, messages and computation together, each as a share of the most it does
alone (so the sends of one size compare with each other, with a compute thread and without).

The answer: for latency and sender occupancy (each with the payload written by the sender, and
already in memory) and for total throughput, the smallest size from which DMA does better than
PIO (and stays better up to 2 KiB), with and without the compute thread. The stream writes each
DMA payload, so total throughput is for payloads the sender writes.
"""

import statistics

from behavioral.scenario import parse
from rtl.layouts import MAX_PAYLOAD_BYTES

from . import Experiment, page, run_scenario

__all__ = ["PioDma", "CORE_GHZ", "WARM_UP", "ROUND_TRIPS", "document"]

#: The core clock of DESIGN's node, for rates in time.
CORE_GHZ = 2.0
#: Messages of a run left out of its figures: the first ones, before it is steady.
WARM_UP = 2
#: Round trips of a point's unloaded run.
ROUND_TRIPS = 8
_SIZES_FULL = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_SIZES_QUICK = (8, 2048)
_SENDS = ("pio", "dma")


def document(point, *, pattern, count):
    """Return the scenario document of ``point``'s run: ``count`` round trips between node 0
    and node 1 (``pattern`` "pingpong") or ``count`` messages streamed from node 0 to node 1
    ("stream")."""
    return {
        "system": {"nodes": 2, "params": {"contexts": point["contexts"]}},
        "process": [
            {"name": "sender", "node": 0, "notify": "lock",
             "window": {"va": 0x1000_0000, "bytes": 0x10000, "key": 0x1111},
             "send_buffer": {"va": 0x2000_0000, "bytes": MAX_PAYLOAD_BYTES}},
            {"name": "receiver", "node": 1, "notify": "lock",
             "window": {"va": 0x1000_0000, "bytes": 0x10000, "key": 0x2222},
             "send_buffer": {"va": 0x2000_0000, "bytes": MAX_PAYLOAD_BYTES}},
        ],
        "traffic": [{"pattern": pattern, "from": "sender", "to": "receiver",
                     "bytes": point["bytes"], "send": point["send"], "count": count}],
        **({"compute": [{"node": 0}]} if point["compute"] else {}),
    }


def _run(point, *, pattern, count, sim, seed, label):
    """Run ``point``'s ``pattern`` run; return the records of its messages from node 0 to
    node 1 after the first :data:`WARM_UP`, in order, and the run's summary."""
    records, summary = run_scenario(document(point, pattern=pattern, count=count), sim=sim,
                                    seed=seed, label=f"{label}-{pattern}")
    forward = sorted((record for record in records if record["from"] == "sender"),
                     key=lambda record: record["id"])
    return forward[WARM_UP:], summary


def _median(records, start, end):
    return statistics.median(record[end] - record[start] for record in records)


class PioDma(Experiment):
    name = "pio-dma"
    title = ("PIO or DMA by message size (8 B to 2 KiB), with and without a compute thread on "
             "the sender's core: latency, sender occupancy, throughput, and where DMA wins")
    parameters = ("contexts", "compute", "send", "bytes")
    figures = ("oneway_cycles", "oneway_ready_cycles", "doorbell_cycles", "sender_cycles",
               "sender_ready_cycles", "messages_per_us", "compute_ipc", "issue_width", "cycles")

    def points(self, full):
        if not full:
            # (with the compute thread only: a first look at both ends of the sizes)
            return [{"contexts": 4, "compute": 1, "send": send, "bytes": size}
                    for send in _SENDS for size in _SIZES_QUICK]
        return [{"contexts": c, "compute": compute, "send": send, "bytes": size}
                for c in (2, 4) for compute in (0, 1) for send in _SENDS for size in _SIZES_FULL]

    def builds(self, points, sim):
        from .. import cli
        seen = {}
        for point in points:
            params = cli._system_params(parse(document(point, pattern="stream", count=1)))
            seen[repr(sorted(params.items()))] = ("system", params)
        return list(seen.values())

    def run(self, point, *, sim, seed, label):
        unloaded, quiet = _run(point, pattern="pingpong", count=ROUND_TRIPS, sim=sim, seed=seed,
                               label=label)
        # enough messages for a steady stream, fewer of the long ones
        count = 24 if point["bytes"] <= 256 else 12
        streamed, busy = _run(point, pattern="stream", count=count, sim=sim, seed=seed,
                              label=label)
        handlers = [record["t_handler"] for record in streamed]
        compute = busy["compute"].get("0")
        return {
            "oneway_cycles": _median(unloaded, "t_start", "t_handler"),
            "oneway_ready_cycles": _median(unloaded, "t_call", "t_handler"),
            "doorbell_cycles": _median(unloaded, "t_doorbell", "t_handler"),
            "sender_cycles": _median(unloaded, "t_start", "t_sent"),
            "sender_ready_cycles": _median(unloaded, "t_call", "t_sent"),
            "messages_per_us": round((len(handlers) - 1) * CORE_GHZ * 1000
                                     / (handlers[-1] - handlers[0]), 3),
            "compute_ipc": None if compute is None else compute["ipc"],
            "issue_width": None if compute is None else compute["issue_width"],
            "cycles": quiet["cycles"] + busy["cycles"],
        }

    def report(self, rows, directory, *, config):
        from . import plots
        _add_speedup(rows)
        lines = [f"# pio-dma ({config})", "",
                 "Messages streamed from node 0 to node 1, PIO or DMA; `compute` 1: a thread "
                 "computing in a loop shares the sender's core. Cycles at 2 GHz; medians over "
                 f"the messages after the first {WARM_UP}.", ""]
        answers = []
        for contexts in sorted({row["contexts"] for row in rows}):
            for compute in (0, 1):
                chosen = [row for row in rows
                          if row["contexts"] == contexts and row["compute"] == compute]
                if not chosen:
                    continue
                lines += [f"## {contexts} contexts, {'with' if compute else 'no'} compute "
                          f"thread", "", _table(chosen), ""]
                crossings = {what: crossover(chosen, figure, better)
                             for what, figure, better in _CROSSINGS}
                answers.append((contexts, compute, crossings))
        lines += ["## Answer", ""]
        for contexts, compute, crossings in answers:
            said = "; ".join(f"{what}: {_size_text(size)}" for what, size in crossings.items())
            lines.append(f"* {contexts} contexts, {'with' if compute else 'without'} the compute "
                         f"thread, DMA beats PIO from: {said}.")
        return page(lines, plots.pio_dma(rows, directory, config=config))


#: What the answer compares: a name, the figure, and whether more (1) or less (-1) is better.
_CROSSINGS = (("latency", "oneway_cycles", -1),
              ("latency, payload in memory", "oneway_ready_cycles", -1),
              ("sender occupancy", "sender_cycles", -1),
              ("sender occupancy, payload in memory", "sender_ready_cycles", -1),
              ("total throughput", "weighted_speedup", 1))


def _add_speedup(rows):
    """Give each row its ``weighted_speedup`` (see the module); None where PIO or DMA alone at
    its size was not measured, or its compute thread's IPC could not be told."""
    alone = {}
    for row in rows:
        if row["compute"] == 0:
            alone.setdefault((row["contexts"], row["bytes"]), {})[row["send"]] = \
                row["messages_per_us"]
    for row in rows:
        best = alone.get((row["contexts"], row["bytes"]), {})
        if set(best) != set(_SENDS) or (row["compute"] and row["compute_ipc"] is None):
            row["weighted_speedup"] = None
            continue
        computed = row["compute_ipc"] / row["issue_width"] if row["compute"] else 0
        row["weighted_speedup"] = round(row["messages_per_us"] / max(best.values()) + computed, 3)


def crossover(rows, figure, better):
    """Return the smallest size from which DMA's ``figure`` beats PIO's at every size measured
    up to the largest (``better`` 1: more is better, -1: less), or None if DMA is not better at
    the largest; sizes where either is missing are passed over."""
    pio = {row["bytes"]: row[figure] for row in rows if row["send"] == "pio"}
    dma = {row["bytes"]: row[figure] for row in rows if row["send"] == "dma"}
    sizes = sorted(size for size in pio if size in dma and pio[size] is not None
                   and dma[size] is not None)
    found = None
    for size in reversed(sizes):
        if (dma[size] - pio[size]) * better > 0:
            found = size
        else:
            break
    return found


def _size_text(size):
    return "never up to 2 KiB" if size is None else f"{size} B"


def _table(rows):
    heads = ("bytes", "send", "one-way", "(in memory)", "doorbell->handler", "sender",
             "(in memory)", "msgs/us", "compute IPC", "weighted speedup")
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for row in sorted(rows, key=lambda row: (row["bytes"], row["send"])):
        cells = (row["bytes"], row["send"], row["oneway_cycles"], row["oneway_ready_cycles"],
                 row["doorbell_cycles"], row["sender_cycles"], row["sender_ready_cycles"],
                 row["messages_per_us"],
                 "-" if row["compute_ipc"] is None else row["compute_ipc"],
                 "-" if row.get("weighted_speedup") is None else row["weighted_speedup"])
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)
