"""``notification``: the notification mechanisms compared with each other, with polling and with
the OS's interrupt path, on the RTL System (the paper's third open question).

A point is a receiver's mechanism (``mode``: polling, LOCK, BRANCH, SPAWN, or INTERRUPT, the
OS's kernel path of :mod:`behavioral.kernel`), a message rate set by the sender's ``gap`` (the
instructions it computes before each send: 0 saturates), and with ``compute`` 1 a thread
sharing the receiver's core that computes in a loop and loads a line of its working set each
turn. A sender on node 0 streams ``count`` messages of 8 bytes (PIO) to the receiver on node 1
(:data:`COUNT`; the quick sweep :data:`QUICK_COUNT`); each run is checked by the reference-NI
scoreboard.

The nodes' caches are scaled down (:data:`MEMORY`: an 8 KiB L1 and a 64 KiB L2, 8 ways) so that a
compute working set that fills the L2, as the paper's user code does, can be simulated: its
:data:`WORKING_SET` lines are walked a line a turn, and the interrupt path's 380 lines evict
them as they would evict a larger L2's.

Figures, over the messages after the first :data:`WARM_UP` (the first interrupt finds the
kernel's lines cold):

* ``latency_p50``, ``latency_p99``, ``latency_max``: cycles from the message's last flit into
  the receiver's NI to the first instruction of the code that consumes it (numpy percentiles;
  of 12 messages, p99 is close to the largest); ``latencies``: each one, for the CDF;
* ``messages_per_us``: messages the receiver handled per microsecond at the 2 GHz clock, from
  the first measured handler start to the last (at ``gap`` 0, its saturation rate);
* ``compute_ipc`` and ``compute_misses_per_kilo``: the compute thread's instructions per cycle
  and its own L2 misses per 1,000 instructions while the messages were under way;
* ``interrupt_misses``: the interrupt path's L2 misses per interrupt (INTERRUPT only).

One more point per compute thread has ``mode`` "idle": the same thread with no messages (the
receiver parked on its lock), for ``slowdown``, the compute thread's IPC against it, in the
report.
"""

import numpy as np

from behavioral.scenario import parse

from . import Experiment, page, run_scenario
from .pio_dma import CORE_GHZ

__all__ = ["Notification", "MODES", "HARDWARE", "COUNT", "QUICK_COUNT", "WARM_UP", "MEMORY",
           "WORKING_SET", "REFERENCES", "document"]

#: The receiver's mechanisms, as scenarios name them: polling, the NI's three, the OS's.
MODES = ("none", "lock", "branch", "spawn", "interrupt")
#: The NI's own mechanisms (the OS is on none of their paths).
HARDWARE = ("lock", "branch", "spawn")
#: Messages a point's run streams (the quick sweep's fewer), and those left out of its figures,
#: the first ones.
COUNT = 16
QUICK_COUNT = 8
WARM_UP = 4
#: Every node's caches: scaled down (see the module docstring).
MEMORY = {"l1_bytes": 8192, "l2_bytes": 65536, "l2_ways": 8}
#: The compute thread's working set: the whole L2.
WORKING_SET = MEMORY["l2_bytes"] // 64
#: Instructions the compute thread computes between its loads.
COMPUTE_INSTRUCTIONS = 64
#: Cycles an idle point's compute thread runs for.
IDLE_CYCLES = 60_000
_GAPS_FULL = (0, 1000, 4000, 20000)
_GAPS_QUICK = (20000,)
#: Outside figures drawn beside ours: (label, ns, source), for the plots' captions.
REFERENCES = (
    ("Linux signal, ~2.4 us", 2400.0, "Aydogmus et al., Extended User Interrupts (xUI), "
                                      "ASPLOS 2025, section 2"),
    ("nanoPU wire to wire, 69 ns", 69.0, "Ibanez et al., The nanoPU, OSDI 2021"),
)
#: Cited as a ratio only (no absolute figure to draw): Intel's user IPIs against eventfd.
UIPI_NOTE = ("user-level IPIs (Intel UIPI) signal about 9x faster than eventfd (S. Mehta, "
             "Linux Plumbers 2021, as reported by LWN)")


def document(point):
    """Return the scenario document of ``point`` (see the module)."""
    idle = point["mode"] == "idle"
    window = {"va": 0x1000_0000, "bytes": 65536}
    return {
        "system": {"nodes": 2, "memory": dict(MEMORY)},
        "process": [
            {"name": "sender", "node": 0, "notify": "none", "window": {**window, "key": 0x1111}},
            {"name": "receiver", "node": 1, "notify": "lock" if idle else point["mode"],
             "window": {**window, "key": 0x2222}},
        ],
        "traffic": [] if idle else [
            {"pattern": "stream", "from": "sender", "to": "receiver", "bytes": 8,
             "send": "pio", "count": point["count"], "gap": point["gap"]}],
        **({"compute": [{"node": 1, "instructions": COMPUTE_INSTRUCTIONS,
                         "lines": WORKING_SET}]} if point["compute"] else {}),
    }


def _measured(records):
    """The messages to the receiver after the first :data:`WARM_UP`, in order."""
    received = sorted((record for record in records if record["to"] == "receiver"),
                      key=lambda record: record["id"])
    return received[WARM_UP:]


class Notification(Experiment):
    name = "notification"
    title = ("the notification mechanisms (polling, LOCK, BRANCH, SPAWN, the OS's interrupt) "
             "from light load to saturation, with and without a compute thread on the "
             "receiver's core: latency p50/p99/max, saturation rate, the compute thread's IPC "
             "and misses")
    parameters = ("compute", "mode", "gap", "count")
    figures = ("latency_p50", "latency_p99", "latency_max", "messages_per_us", "compute_ipc",
               "compute_misses_per_kilo", "interrupt_misses", "cycles", "latencies")

    def points(self, full):
        gaps = _GAPS_FULL if full else _GAPS_QUICK
        computes = (0, 1) if full else (0,)
        count = COUNT if full else QUICK_COUNT
        points = [{"compute": compute, "mode": mode, "gap": gap, "count": count}
                  for compute in computes for mode in MODES for gap in gaps]
        if full:
            points.append({"compute": 1, "mode": "idle", "gap": 0, "count": 0})
        return points

    def builds(self, points, sim):
        from .. import cli
        return [("system", cli._system_params(parse(document(points[0]))))] if points else []

    def run(self, point, *, sim, seed, label):
        options = {"quiet_cycles": IDLE_CYCLES} if point["mode"] == "idle" else {}
        records, summary = run_scenario(document(point), sim=sim, seed=seed, label=label,
                                        options=options)
        compute = summary["compute"].get("1", {})
        figures = {"compute_ipc": compute.get("ipc"),
                   "compute_misses_per_kilo": compute.get("l2_misses_per_kilo"),
                   "cycles": summary["cycles"]}
        server = summary["nodes"]["1"]["os"]
        if server["interrupts"]:
            figures["interrupt_misses"] = round(server["interrupt_l2_misses"]
                                                / server["interrupts"], 1)
        measured = _measured(records)
        if not measured:
            return figures
        latencies = np.array([record["t_handler"] - record["t_last_flit_in"]
                              for record in measured])
        handlers = [record["t_handler"] for record in measured]
        p50, p99 = np.percentile(latencies, [50, 99])
        figures.update({
            "latency_p50": round(float(p50), 1), "latency_p99": round(float(p99), 1),
            "latency_max": int(latencies.max()),
            "messages_per_us": round((len(handlers) - 1) * CORE_GHZ * 1000
                                     / (handlers[-1] - handlers[0]), 3),
            "latencies": " ".join(map(str, latencies.tolist())),
        })
        return figures

    def report(self, rows, directory, *, config):
        from . import plots
        idle = {row["compute"]: row for row in rows if row["mode"] == "idle"}
        for row in rows:
            alone = idle.get(row["compute"])
            row["slowdown"] = (round(row["compute_ipc"] / alone["compute_ipc"], 3)
                               if row["compute"] and alone and row["compute_ipc"]
                               and alone["compute_ipc"] else None)
        lines = [f"# notification ({config})", "",
                 f"8-byte PIO messages streamed from node 0 to a receiver on node 1 under each "
                 f"mechanism; `gap`: instructions the sender computes before each send (0: "
                 f"back to back); `compute` 1: a thread on the receiver's core walking a "
                 f"working set the size of the L2 ({MEMORY['l2_bytes'] // 1024} KiB, scaled "
                 f"down). Latency: last flit in to the consuming code's first instruction, "
                 f"cycles at {CORE_GHZ:g} GHz, over the messages after the first {WARM_UP} "
                 f"(`count` streamed).", ""]
        for compute in sorted({row["compute"] for row in rows}):
            chosen = [row for row in rows if row["compute"] == compute and row["mode"] != "idle"]
            lines += [f"## {'With' if compute else 'Without'} a compute thread", "",
                      "| mode | gap | p50 | p99 | max | p50 (ns) | messages/us | compute IPC "
                      "| slowdown | compute misses/kinstr | interrupt misses |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for row in chosen:
                lines.append(
                    f"| {row['mode']} | {row['gap']} | {_cell(row['latency_p50'])} | "
                    f"{_cell(row['latency_p99'])} | {_cell(row['latency_max'])} | "
                    f"{_cell(_ns(row['latency_p50']))} | {_cell(row['messages_per_us'])} | "
                    f"{_cell(row['compute_ipc'])} | {_cell(row['slowdown'])} | "
                    f"{_cell(row['compute_misses_per_kilo'])} | "
                    f"{_cell(row['interrupt_misses'])} |")
            if compute and compute in idle:
                alone = idle[compute]
                lines += ["", f"With no messages the compute thread runs at "
                              f"{alone['compute_ipc']} instructions per cycle, "
                              f"{alone['compute_misses_per_kilo']} L2 misses per 1,000."]
            lines.append("")
        lines += ["## Answer", "", *answer(rows), "",
                  "Outside figures on the plots: "
                  + "; ".join(f"{label} ({source})" for label, _, source in REFERENCES)
                  + f"; and {UIPI_NOTE}."]
        return page(lines, plots.notification(rows, directory, config=config))


def answer(rows):
    """The mechanisms compared, one line each (the lightest load's p50, the saturation rate),
    and whether every hardware mechanism stays below the interrupt path."""
    lines = []
    for compute in sorted({row["compute"] for row in rows}):
        chosen = [row for row in rows if row["compute"] == compute and row["mode"] in MODES
                  and row["latency_p50"] is not None]
        if not chosen:
            continue
        light, heavy = max(row["gap"] for row in chosen), min(row["gap"] for row in chosen)
        said = []
        for mode in MODES:
            at = {row["gap"]: row for row in chosen if row["mode"] == mode}
            if light in at:
                text = f"{mode} {at[light]['latency_p50']:g} cycles"
                if heavy in at and heavy != light:
                    text += f" (at gap {heavy}: {at[heavy]['messages_per_us']:g} messages/us)"
                said.append(text)
        lines.append(f"* {'With' if compute else 'Without'} the compute thread, p50 latency at "
                     f"gap {light}: " + "; ".join(said) + ".")
        interrupt = [row["latency_p50"] for row in chosen
                     if row["mode"] == "interrupt" and row["gap"] == light]
        hardware = [row["latency_max"] for row in chosen
                    if row["mode"] in HARDWARE and row["gap"] == light]
        if interrupt and hardware:
            below = max(hardware) < min(interrupt)
            lines.append(f"  At gap {light}, every hardware mechanism's slowest message "
                         f"({max(hardware)} cycles) {'is below' if below else 'is NOT below'} "
                         f"the interrupt path's median ({min(interrupt):g}).")
        # (a hardware mechanism whose slowest message took 100 times its 10 cycles was queued)
        overloaded = [row for row in chosen if row["gap"] == heavy and row["mode"] in HARDWARE
                      and row["latency_max"] > 1000]
        if heavy != light and overloaded:
            lines.append(f"  At gap {heavy}, {', '.join(row['mode'] for row in overloaded)} "
                         f"queue: the slowest message waits "
                         f"{max(row['latency_max'] for row in overloaded)} cycles.")
    return lines


def _ns(cycles):
    return None if cycles is None else round(cycles / CORE_GHZ, 1)


def _cell(value):
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
