"""The experiments' plots (matplotlib, written as PNG beside ``points.csv``), each function
returning the names of the files it wrote; and :func:`timeline`, a run's messages stage by stage
(``smtni plot``)."""

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)

__all__ = ["pio_dma", "message_cache", "working_set", "send_buffering", "interrupt_baseline",
           "notification", "timeline", "Timeline", "TIMELINE_STAGES"]

#: A colour per notification mechanism, as scenarios name them (the notification experiment's
#: ``MODES``), the same in every plot.
_MODE_COLOURS = {"none": "tab:grey", "lock": "tab:blue", "branch": "tab:orange",
                 "spawn": "tab:green", "interrupt": "tab:red"}


def _save(figure, directory, name):
    figure.tight_layout()
    figure.savefig(directory / name, dpi=110)
    plt.close(figure)
    return name


def pio_dma(rows, directory, *, config):
    """Each figure the answer compares (and the stream's rate) against message size, a line per
    send and compute thread, a figure per context count; DMA's crossovers marked."""
    from .pio_dma import _CROSSINGS, crossover

    units = {"oneway_cycles": "cycles", "oneway_ready_cycles": "cycles",
             "sender_cycles": "cycles per message", "sender_ready_cycles": "cycles per message",
             "weighted_speedup": "sum of shares of alone", "messages_per_us": "messages per us"}
    panels = [*_CROSSINGS, ("stream rate", "messages_per_us", 1)]
    names = []
    for contexts in sorted({row["contexts"] for row in rows}):
        chosen = [row for row in rows if row["contexts"] == contexts]
        figure, axes = plt.subplots(2, 3, figsize=(15, 8.4))
        for axis, (what, figure_name, better) in zip(axes.flat, panels):
            for compute, style in ((0, "-"), (1, "--")):
                for send, colour in (("pio", "tab:blue"), ("dma", "tab:orange")):
                    points = sorted((row["bytes"], row[figure_name]) for row in chosen
                                    if row["send"] == send and row["compute"] == compute
                                    and row.get(figure_name) is not None)
                    if points:
                        axis.plot(*zip(*points), style, marker="o", color=colour,
                                  label=f"{send.upper()}{', compute thread' if compute else ''}")
                crossing = crossover([row for row in chosen if row["compute"] == compute],
                                     figure_name, better)
                if crossing is not None:
                    axis.axvline(crossing, color="grey", linestyle=style, linewidth=0.8)
            axis.set_xscale("log", base=2)
            axis.set_xlabel("message size (bytes)")
            axis.set_ylabel(f"{what} ({units[figure_name]})")
            axis.grid(True, alpha=0.3)
            if axis.get_legend_handles_labels()[0]:     # (none where nothing was measured)
                axis.legend(fontsize=8)
        figure.suptitle(f"PIO vs DMA, {contexts} SMT contexts, 2 GHz core ({config}); grey "
                        f"lines: DMA better from there on")
        names.append(_save(figure, directory, f"pio-dma-{contexts}ctx.png"))
    return names


def message_cache(rows, directory, *, config):
    """Bus transfers and the reader's first load against message size, buffer on and off."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for buffer, colour in (("on", "tab:green"), ("off", "tab:red")):
        points = sorted((row["lines"], row["bus_transfers"], row["first_load_cycles"])
                        for row in rows if row["buffer"] == buffer)
        if not points:
            continue
        sizes, transfers, loads = zip(*points)
        axes[0].plot(sizes, transfers, marker="o", color=colour, label=f"buffer {buffer}")
        axes[1].plot(sizes, loads, marker="o", color=colour, label=f"buffer {buffer}")
    for axis, label in zip(axes, ("memory-bus transfers (lines)",
                                  "reader's first load of a line (cycles)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("message size (64-byte lines)")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(f"The message buffer keeping arriving lines ({config})")
    return [_save(figure, directory, "message-cache.png")]


def working_set(rows, directory, *, config, caches):
    """A working set that fills the L2 (of ``caches``, in words): its misses and the bus
    transfers per message against message size, a line per delivery (buffer on, to DRAM, into
    the L2), a column per how much of each message the program reads."""
    reads = [read for read in ("first", "all") if any(row["read"] == read for row in rows)]
    if not reads:
        return []
    figure, axes = plt.subplots(2, len(reads), figsize=(5.5 * len(reads), 7.5), squeeze=False)
    # (lines that coincide stay apart by their width, style and marker)
    deliveries = (("on", dict(color="tab:green", linewidth=4, alpha=0.6, marker="o"),
                   "buffer on"),
                  ("off", dict(color="tab:red", linestyle="--", marker="s"),
                   "buffer off, to DRAM"),
                  ("inject", dict(color="tab:purple", linestyle=":", marker="^"),
                   "buffer off, into the L2"))
    for column, read in enumerate(reads):
        for buffer, style, label in deliveries:
            points = sorted((row["lines"], row["working_set_misses"], row["bus_transfers"])
                            for row in rows if row["read"] == read and row["buffer"] == buffer)
            if not points:
                continue
            sizes, misses, transfers = zip(*points)
            axes[0][column].plot(sizes, misses, label=label, **style)
            axes[1][column].plot(sizes, transfers, label=label, **style)
        for row, label in enumerate(("working set's L2 misses per message",
                                     "memory-bus transfers per message (lines)")):
            axis = axes[row][column]
            axis.set_xscale("log", base=2)
            axis.set_xlabel("message size (64-byte lines)")
            axis.set_ylabel(label)
            axis.set_title(f"the program reads {'the first line' if read == 'first' else 'all'}"
                           f" of each message")
            axis.grid(True, alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
    figure.suptitle(f"Messages and a working set that fills the L2 ({caches}; {config})")
    return [_save(figure, directory, "message-cache-working-set.png")]


def send_buffering(rows, directory, *, config):
    """Bubbles and latency of 2 KiB messages and the lines a send holds in the buffer, against
    the depth, a line per link rate, a column per payload placement."""
    from .send_buffering import gbps

    payloads = [payload for payload in ("cache", "dram", "mixed")
                if any(row["payload"] == payload for row in rows)]
    figure, axes = plt.subplots(3, len(payloads), figsize=(5 * len(payloads), 11.5),
                                squeeze=False)
    for column, payload in enumerate(payloads):
        for rate in sorted({row["cycles_per_flit"] for row in rows}, reverse=True):
            points = sorted((row["depth"], row["bubbles_2048"], row["latency_2048"],
                             row["buffer_lines"]) for row in rows
                            if row["payload"] == payload and row["cycles_per_flit"] == rate)
            if not points:
                continue
            depths, *measured = zip(*points)
            label = f"{gbps(rate):g} Gb/s ({rate} cycles/flit)"
            for axis, values in zip(axes[:, column], measured):
                axis.plot(depths, values, marker="o", label=label)
        for row, label in enumerate(("bubbles in a 2 KiB message (cycles)",
                                     "2 KiB doorbell to handler (cycles)",
                                     "lines a DMA send holds in the buffer (mean)")):
            axis = axes[row][column]
            axis.set_xlabel("DMA lines fetched ahead")
            axis.set_ylabel(label)
            axis.set_title(f"payload in {payload}")
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
    figure.suptitle(f"Send buffering against link rate, 2 GHz core ({config})")
    return [_save(figure, directory, "send-buffering.png")]


def interrupt_baseline(rows, directory, *, config):
    """The interrupt's cost in cycles and in us against the user's working set (at 2 GHz, a line
    per L2 size, and the Ultra-1) and against the clock (a full L2, a line per L2 size)."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 8.4))
    # (the L2 sizes' lines often coincide: they stay apart by their width and style)
    styles = [dict(linewidth=5, alpha=0.5, marker="o"), dict(linestyle="--", marker="s"),
              dict(linestyle=":", marker="^", linewidth=2)]
    series = [("node", mb, f"node, {mb:g} MiB L2", styles[index % len(styles)])
              for index, mb in enumerate(sorted(
                  {row["l2_mb"] for row in rows if row["machine"] == "node"}))]
    for row in rows:
        if row["machine"] == "ultra1":
            series.append(("ultra1", row["l2_mb"], f"Ultra-1 ({row['core_ghz'] * 1000:g} MHz, "
                           f"{row['l2_mb'] * 1024:g} KiB L2)", dict(marker="D")))
            break
    for machine, mb, label, style in series:
        by_set = sorted((100 * row["working_set"], row["cycles"], row["us"]) for row in rows
                        if row["machine"] == machine and row["l2_mb"] == mb
                        and (machine == "ultra1" or row["core_ghz"] == 2.0))
        if by_set:
            shares, cycles, us = zip(*by_set)
            axes[0][0].plot(shares, cycles, label=label, **style)
            axes[0][1].plot(shares, us, label=label, **style)
        by_clock = sorted((row["core_ghz"], row["cycles"], row["us"]) for row in rows
                          if row["machine"] == "node" == machine and row["l2_mb"] == mb
                          and row["working_set"] == 1.0)
        if by_clock:
            clocks, cycles, us = zip(*by_clock)
            axes[1][0].plot(clocks, cycles, label=label, **style)
            axes[1][1].plot(clocks, us, label=label, **style)
    titles = (("user working set (% of the L2)", "interrupt (cycles)",
               "the node at 2 GHz, the Ultra-1 at 147 MHz"),
              ("user working set (% of the L2)", "interrupt (us)",
               "the node at 2 GHz, the Ultra-1 at 147 MHz"),
              ("core clock (GHz)", "interrupt (cycles)", "L2 full of the user's lines"),
              ("core clock (GHz)", "interrupt (us)", "L2 full of the user's lines"))
    for axis, (x, y, title) in zip(axes.flat, titles):
        axis.set_xlabel(x)
        axis.set_ylabel(y)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    axes[0][0].axhline(17_500, color="grey", linestyle=":", linewidth=1)
    axes[0][0].annotate("the paper: 17,500 cycles (Ultra-1)", (0, 17_500), fontsize=8,
                        xytext=(2, 4), textcoords="offset points")
    figure.suptitle(f"The OS's network-interrupt path on the node's caches ({config})")
    return [_save(figure, directory, "interrupt-baseline.png")]


def notification(rows, directory, *, config):
    """The latency CDF per mechanism at the lightest load (outside figures as labelled lines),
    p99 latency against the offered message rate, and the compute thread's slowdown against
    it."""
    import numpy as np

    from .notification import CORE_GHZ, MODES, REFERENCES

    # (LOCK, BRANCH and SPAWN often coincide: they stay apart by their width)
    widths = dict(zip(MODES, (1.5, 6, 4, 2, 1.5)))
    figure, axes = plt.subplots(1, 3, figsize=(17, 5))
    measured = [row for row in rows if row["mode"] in MODES and row["latencies"] is not None]
    light = max((row["gap"] for row in measured), default=None)
    for row in measured:
        if row["gap"] != light:
            continue
        latencies = np.sort(np.array(str(row["latencies"]).split(), dtype=float))
        shares = np.arange(1, len(latencies) + 1) / len(latencies)
        axes[0].step(latencies, shares, where="post", color=_MODE_COLOURS[row["mode"]],
                     linestyle="--" if row["compute"] else "-", linewidth=widths[row["mode"]],
                     alpha=0.7,
                     label=f"{row['mode']}{', compute thread' if row['compute'] else ''}")
    for label, ns, _ in REFERENCES:
        axes[0].axvline(ns * CORE_GHZ, color="black", linestyle=":", linewidth=1)
        axes[0].text(ns * CORE_GHZ * 1.08, 0.5, label, rotation=90, fontsize=8,
                     va="center", transform=axes[0].get_xaxis_transform())
    axes[0].set_xscale("log")
    axes[0].set_xlabel(f"last flit in to handler (cycles at {CORE_GHZ:g} GHz)")
    axes[0].set_ylabel("share of messages")
    axes[0].set_title(f"latency CDF, gap {light} instructions")
    # The offered rate of a gap: the sender's pace, which polling with no compute thread keeps
    # up with (the messages it handled per us at that gap).
    offered = {row["gap"]: row["messages_per_us"] for row in rows
               if row["mode"] == "none" and row["compute"] == 0 and row["messages_per_us"]}
    for axis, figure_name, title in ((axes[1], "latency_p99", "p99 latency (cycles)"),
                                     (axes[2], "slowdown", "compute thread's IPC / alone")):
        for mode in MODES:
            for compute, style in ((0, "-"), (1, "--")):
                points = sorted((offered[row["gap"]], row[figure_name]) for row in rows
                                if row["mode"] == mode and row["compute"] == compute
                                and row.get(figure_name) is not None and row["gap"] in offered)
                if points:
                    axis.plot(*zip(*points), style, marker="o", color=_MODE_COLOURS[mode],
                              label=f"{mode}{', compute thread' if compute else ''}")
        axis.set_xscale("log")
        axis.set_xlabel("offered rate (messages per us: the sender's pace)")
        axis.set_ylabel(title)
        axis.set_title(title + " against offered rate")
    axes[1].set_yscale("log")
    if not axes[2].get_legend_handles_labels()[0]:
        axes[2].text(0.5, 0.5, "no point with a compute thread", ha="center",
                     transform=axes[2].transAxes)
    # (the CDF's legend between the outside figures' lines)
    for axis, where in zip(axes, (dict(loc="lower left", bbox_to_anchor=(0.37, 0.02)), {}, {})):
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, **where)
    sources = "; ".join(f"{label}: {source}" for label, _, source in REFERENCES)
    figure.suptitle(f"Notification mechanisms, 8 B PIO messages ({config})\n{sources}",
                    fontsize=9)
    return [_save(figure, directory, "notification.png")]


#: A message's stages, each named after the stamp of the system testbench's record
#: (:mod:`tb.system_tb`) it ends at and drawn from the stamp before it: stamp -> name. Their
#: colours run through viridis in this order, apart from the mechanisms' colours.
TIMELINE_STAGES = {"t_first_flit": "doorbell \u2192 first flit out",
                   "t_first_flit_in": "\u2192 first flit in",
                   "t_last_flit_in": "\u2192 last flit in",
                   "t_completion": "\u2192 completion",
                   "t_notified": "\u2192 notified",
                   "t_handler": "\u2192 handler"}
_STAMPS = ("t_doorbell", *TIMELINE_STAGES)
#: Two stages drawn as one where the stamp between them is missing or later than the next.
_MERGED = "stamp missing or out of order"


@dataclass(frozen=True)
class Timeline:
    """What :func:`timeline` drew.

    Attributes
    ----------
    messages : int
        Messages drawn as bars.
    bars : dict
        Stage name -> bars drawn in that stage's colour.
    histogram : dict
        Notification mode -> messages counted in its histogram.
    rows : tuple of str
        The timeline's rows, top to bottom: ``sender \u2192 receiver``, once per lane.
    """
    messages: int
    bars: dict
    histogram: dict
    rows: tuple


def timeline(records, path, *, messages, title):
    """Draw ``records`` (the per-message records ``smtni run --json`` writes) into the PNG
    ``path`` and return the :class:`Timeline` drawn.

    On the left, the first ``messages`` messages by doorbell, each a bar from its doorbell to its
    handler's first instruction, a colour per stage, a row per sender and receiver (the
    processes), in as many lanes as the row's bars need not to overlap. On the right, over every
    message, a histogram per notification mode of last flit in to handler.
    """
    doorbelled = sorted((record for record in records if "t_doorbell" in record),
                        key=lambda record: (record["t_doorbell"], record["id"]))[:messages]
    lanes, rows = _lanes(doorbelled)
    figure, (bars_axis, histogram_axis) = plt.subplots(
        1, 2, figsize=(14, max(4.5, 2.6 + 0.3 * len(rows))), width_ratios=(2.3, 1),
        layout="constrained")
    bars = _draw_bars(bars_axis, doorbelled, lanes, rows)
    bars_axis.set_title(f"the first {len(doorbelled)} of {len(records)} messages by doorbell "
                        f"(rows: sender \u2192 receiver)", fontsize=10)
    histogram = _draw_histogram(histogram_axis, records)
    figure.legend(*bars_axis.get_legend_handles_labels(), loc="outside lower center", ncols=4,
                  fontsize=8, title="stage, from the stamp before", title_fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return Timeline(messages=len(doorbelled), bars=bars, histogram=histogram, rows=tuple(rows))


def _draw_bars(axis, records, lanes, rows):
    """Draw a bar per record in its lane (of :func:`_lanes`), a colour per stage; return the bars
    per stage."""
    stages = {}
    for record, lane in zip(records, lanes):
        for stage, start, end in _stages(record):
            stages.setdefault(stage, []).append((lane, start, end - start))
    colours = plt.get_cmap("viridis")(
        [index / (len(TIMELINE_STAGES) - 1) for index in range(len(TIMELINE_STAGES))])
    for name, colour in (*zip(TIMELINE_STAGES.values(), colours), (_MERGED, "lightgrey")):
        if name in stages:
            y, left, width = zip(*stages[name])
            axis.barh(y, width, left=left, height=0.7, color=colour, label=name)
    # A row's name once, at its first lane; a line between rows.
    named = [row if row != above else "" for row, above in zip(rows, ("", *rows))]
    axis.set_yticks(range(len(rows)), named, fontsize=8)
    axis.tick_params(axis="y", length=0)
    for lane, name in enumerate(named[1:], 1):
        if name:
            axis.axhline(lane - 0.5, color="grey", linewidth=0.5)
    axis.set_ylim(max(len(rows), 1) - 0.5, -0.5)   # (one empty row if none was sent)
    axis.margins(x=0.02)
    axis.set_xlabel("cycle")
    axis.grid(True, axis="x", alpha=0.3)
    return {name: len(bars) for name, bars in stages.items()}


def _draw_histogram(axis, records):
    """Draw a histogram per notification mode of every record's last flit in to handler,
    stacked; return the messages counted per mode."""
    import numpy as np
    from matplotlib.ticker import LogFormatter, MaxNLocator

    latencies = {}
    for record in records:
        if "t_last_flit_in" in record and "t_handler" in record:
            latencies.setdefault(record["notify"], []).append(
                record["t_handler"] - record["t_last_flit_in"])
    modes = sorted(latencies, key=lambda mode: (mode not in _MODE_COLOURS, mode))
    counted = {}
    if modes:
        # Mechanisms differ by orders of magnitude (the OS's path against the NI's): log bins,
        # a latency under a cycle counted in the first.
        values = [np.maximum(latencies[mode], 1) for mode in modes]
        everything = np.concatenate(values)
        bins = np.geomspace(everything.min() / 1.5, everything.max() * 1.5, 25)
        counts, _, _ = axis.hist(values, bins=bins, stacked=True,
                                 color=[_MODE_COLOURS.get(mode, "black") for mode in modes],
                                 label=[f"{mode} ({len(latencies[mode])})" for mode in modes])
        # (stacked: each mode's counts are on top of the modes before it)
        totals = [0, *(int(np.sum(layer)) for layer in np.atleast_2d(counts))]
        counted = {mode: high - low for mode, low, high in zip(modes, totals, totals[1:])}
        axis.set_xscale("log")
        # (plain numbers; the minor ticks' too where the range is narrow)
        axis.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        axis.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False,
                                                    minor_thresholds=(1, 0.4)))
        axis.legend(fontsize=8, title="notify (messages)", title_fontsize=8)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("last flit in \u2192 handler (cycles)")
    axis.set_ylabel("messages")
    axis.set_title("every message, stacked by notification mode", fontsize=10)
    axis.grid(True, alpha=0.3)
    return counted


def _lanes(records):
    """Return each record's row and the rows' names: a row per sender and receiver, in order of
    their first message, as many lanes (rows) each as its messages need for their bars not to
    overlap."""
    ends = {}               # (sender, receiver) -> the cycle each of its lanes is busy until
    placed = []
    for record in records:
        pair = (record["from"], record["to"])
        busy = ends.setdefault(pair, [])
        lane = next((lane for lane, end in enumerate(busy) if end < record["t_doorbell"]),
                    len(busy))
        busy[lane:lane + 1] = [max((end for _, _, end in _stages(record)),
                                   default=record["t_doorbell"])]
        placed.append((pair, lane))
    first, row = {}, 0
    for pair, busy in ends.items():
        first[pair], row = row, row + len(busy)
    rows = [f"{sender} \u2192 {receiver}" for (sender, receiver), busy in ends.items()
            for _ in busy]
    return [first[pair] + lane for pair, lane in placed], rows


def _stages(record):
    """Return a record's stages as ``(name, start, end)``: from stamp to stamp among those it
    has, a stamp later than one after it left out (a LOCK message's ``t_notified`` can be the
    release a later message caused, its own signal having been counted before its thread
    waited), and two stages drawn as one where a stamp is missing or left out."""
    present = [stamp for stamp in _STAMPS if stamp in record]
    kept = [stamp for index, stamp in enumerate(present)
            if all(record[stamp] <= record[later] for later in present[index + 1:])]
    return [(TIMELINE_STAGES[end] if _STAMPS.index(end) == _STAMPS.index(start) + 1
             else _MERGED, record[start], record[end]) for start, end in zip(kept, kept[1:])]
