"""The experiments' plots (matplotlib, written as PNG beside ``points.csv``); each function
returns the names of the files it wrote."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)

__all__ = ["pio_dma", "message_cache", "working_set", "send_buffering", "interrupt_baseline",
           "notification"]


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

    colours = dict(zip(MODES, ("tab:grey", "tab:blue", "tab:orange", "tab:green", "tab:red")))
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
        axes[0].step(latencies, shares, where="post", color=colours[row["mode"]],
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
                    axis.plot(*zip(*points), style, marker="o", color=colours[mode],
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
