"""``smtni experiment``: sweeps on Dask, ``points.csv``, resume, failures, the CLI's errors, and
each experiment's quick sweep with what must hold whatever the design's numbers."""

import csv
import time

import pytest
from distributed import LocalCluster

from behavioral import kernel
from tb import cli, experiments
from tb.experiments import (Experiment, PointFailed, notification, read_rows, send_buffering,
                            sweep)


class Squares(Experiment):
    """A sweep with no simulator: ``n`` squared, and a failure where asked."""
    name = "squares"
    title = "squares"
    parameters = ("n", "kind")
    figures = ("square", "half")
    fail = ()
    ran = []

    def points(self, full):
        return [{"n": n, "kind": "even" if n % 2 == 0 else "odd"}
                for n in range(8 if full else 4)]

    def run(self, point, *, sim, seed, label):
        # (the first points end last: the rows must be put back in the points' order)
        time.sleep(0.05 * max(0, 4 - point["n"]))
        self.ran.append(point["n"])
        if point["n"] in self.fail:
            raise PointFailed(f"n = {point['n']} fails on purpose")
        return {"square": point["n"] ** 2 + seed, "half": point["n"] / 2 if point["n"] else None}

    def report(self, rows, directory, *, config):
        return f"{config}: {sum(row['square'] or 0 for row in rows)}\n"


@pytest.fixture
def squares(monkeypatch):
    chosen = Squares()
    chosen.ran = []
    monkeypatch.setitem(experiments.EXPERIMENTS, "squares", chosen)
    return chosen


@pytest.fixture(scope="module")
def scheduler():
    """A Dask cluster in this process (threads), whose workers see the test's experiment."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_points_are_written_in_order_and_the_report_beside_them(squares, scheduler, tmp_path):
    done = sweep("squares", seed=3, scheduler=scheduler, out=tmp_path)
    assert done.failed == [] and done.resumed == 0 and sorted(squares.ran) == [0, 1, 2, 3]
    with open(tmp_path / "squares" / "points.csv", newline="") as file:
        assert list(csv.reader(file)) == [
            ["n", "kind", "seed", "square", "half"], ["0", "even", "3", "3", ""],
            ["1", "odd", "3", "4", "0.5"], ["2", "even", "3", "7", "1.0"],
            ["3", "odd", "3", "12", "1.5"]]
    assert (tmp_path / "squares" / "summary.md").read_text() == \
        "verilator, seed 3, quick sweep: 26\n"


def test_a_rerun_runs_only_what_is_missing_for_its_seed(squares, scheduler, tmp_path):
    sweep("squares", seed=3, scheduler=scheduler, out=tmp_path)
    path = tmp_path / "squares" / "points.csv"
    first = path.read_text()
    # an interrupted sweep: the last point's row never written
    path.write_text("".join(first.splitlines(keepends=True)[:-1]))
    squares.ran.clear()
    done = sweep("squares", seed=3, scheduler=scheduler, out=tmp_path)
    assert squares.ran == [3] and done.resumed == 3 and path.read_text() == first
    # another seed runs everything again, and the rows of the first stay
    squares.ran.clear()
    done = sweep("squares", seed=4, scheduler=scheduler, out=tmp_path)
    assert sorted(squares.ran) == [0, 1, 2, 3] and done.resumed == 0
    assert [(row["n"], row["seed"]) for row in read_rows(path)] == [
        *((n, 4) for n in range(4)), *((n, 3) for n in range(4))]
    # the full sweep adds its new points only
    squares.ran.clear()
    done = sweep("squares", full=True, seed=4, scheduler=scheduler, out=tmp_path)
    assert sorted(squares.ran) == [4, 5, 6, 7] and done.resumed == 4


def test_a_failing_point_is_reported_and_the_rest_go_on(squares, scheduler, tmp_path):
    squares.fail = (1, 2)
    done = sweep("squares", seed=3, scheduler=scheduler, out=tmp_path)
    assert sorted((point["n"], text) for point, text in done.failed) == [
        (1, "n = 1 fails on purpose"), (2, "n = 2 fails on purpose")]
    assert [row["n"] for row in done.rows] == [0, 3]
    assert [row["n"] for row in read_rows(tmp_path / "squares" / "points.csv")] == [0, 3]
    # a rerun tries the failed points again
    squares.fail, squares.ran = (), []
    done = sweep("squares", seed=3, scheduler=scheduler, out=tmp_path)
    assert sorted(squares.ran) == [1, 2] and [row["n"] for row in done.rows] == [0, 1, 2, 3]


def test_a_bug_in_a_point_is_reported_with_it(squares, scheduler, tmp_path, monkeypatch):
    monkeypatch.setattr(Squares, "run", lambda self, point, **kwargs: 1 / point["n"] and {})
    done = sweep("squares", seed=3, scheduler=scheduler, out=tmp_path)
    assert [(point["n"], text) for point, text in done.failed] == [
        (0, "ZeroDivisionError: division by zero")]


@pytest.mark.parametrize("argv, error", [
    (["experiment"], "give an experiment's name, or --list to see them"),
    (["experiment", "pio-dmaa"], "no experiment 'pio-dmaa'; the experiments are "
                                 "interrupt-baseline, message-cache, notification, pio-dma, "
                                 "send-buffering (smtni experiment --list)"),
    (["experiment", "pio-dma", "--scheduler", "localhost:8786"],
     "--scheduler 'localhost:8786' is no Dask address; give it as tcp://HOST:PORT"),
    (["experiment", "pio-dma", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"],
     "--workers 2 and --scheduler tcp://127.0.0.1:8786: the scheduler's cluster has its own "
     "workers; give one of them"),
    (["experiment", "pio-dma", "--workers", "0"], "argument --workers: '0' is not a positive "
                                                  "integer (see 'smtni experiment --help')"),
    (["experiment", "pio-dma", "--quick", "--full"], "argument --full: not allowed with "
                                                     "argument --quick (see 'smtni experiment "
                                                     "--help')"),
])
def test_bad_input_gets_one_line_and_exit_2(argv, error, capsys):
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"smtni: {error}"]


def test_a_scheduler_that_does_not_answer_gets_one_line_and_exit_2(capsys, tmp_path):
    # (a port nothing listens on: the client gives up after its timeout)
    assert cli.main(["experiment", "message-cache", "--scheduler", "tcp://127.0.0.1:9",
                     "-o", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(
        "smtni: --scheduler tcp://127.0.0.1:9: no Dask scheduler answers there"), error


def test_the_list_names_every_experiment(capsys):
    assert cli.main(["experiment", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["interrupt-baseline", "message-cache", "notification", "pio-dma",
                      "send-buffering"]


def test_message_cache_quick_is_the_same_on_one_worker_and_two(tmp_path):
    """The real sweep on Verilator, once on one worker and once on two: the same points.csv; and
    what must hold: a kept message costs no DRAM transfer, one that is not costs a read and a
    write per line; beside a working set that fills the L2, the buffer costs it fewer misses
    than injection and fewer bus transfers than delivery to DRAM."""
    one = sweep("message-cache", workers=1, out=tmp_path / "one")
    two = sweep("message-cache", workers=2, out=tmp_path / "two")
    assert one.failed == [] and two.failed == []
    text = (tmp_path / "one" / "message-cache" / "points.csv").read_text()
    assert text == (tmp_path / "two" / "message-cache" / "points.csv").read_text()
    rows = {(row["buffer"], row["lines"]): row for row in one.rows
            if row["working_set"] == "none"}
    assert sorted(rows) == [("off", 1), ("off", 8), ("on", 1), ("on", 8)]
    for lines in (1, 8):
        on, off = rows[("on", lines)], rows[("off", lines)]
        assert (on["dram_reads"], on["dram_writes"], on["bus_transfers"]) == (0, 0, 0), on
        assert (off["read_dram_reads"], off["dram_writes"]) == (lines, lines), off
        assert on["first_load_cycles"] < off["first_load_cycles"]
    # a working set that fills the L2, a message read only in its first line: the buffer keeps
    # the rest out of the L2 (injection puts it all there) and off the bus (off writes it)
    filled = {row["buffer"]: row for row in one.rows if row["working_set"] == "l2"}
    assert sorted(filled) == ["inject", "off", "on"]
    assert filled["on"]["working_set_misses"] < filled["inject"]["working_set_misses"]
    assert filled["on"]["bus_transfers"] < filled["off"]["bus_transfers"]
    assert filled["inject"]["l2_injections"] == 8 and filled["on"]["l2_injections"] == 0
    summary = (tmp_path / "one" / "message-cache" / "summary.md").read_text()
    assert "saves 2 memory-bus transfers per line" in summary
    assert "a message the program reads only the first line of costs it" in summary
    for name in ("message-cache.png", "message-cache-working-set.png"):
        assert (tmp_path / "one" / "message-cache" / name).stat().st_size > 10_000


def test_pio_dma_quick(tmp_path):
    """The quick sweep on Verilator (PIO and DMA, 8 B and 2 KiB, with the compute thread): every
    point scored with no mismatch, and what must hold whatever the design's numbers."""
    done = sweep("pio-dma", workers=1, out=tmp_path)
    assert done.failed == []
    rows = {(row["send"], row["bytes"]): row for row in done.rows}
    assert sorted(rows) == [("dma", 8), ("dma", 2048), ("pio", 8), ("pio", 2048)]
    for row in rows.values():
        # the payload in place is no later than the send's start
        assert row["oneway_ready_cycles"] <= row["oneway_cycles"]
        assert row["sender_ready_cycles"] <= row["sender_cycles"] < row["oneway_cycles"]
        assert 0 < row["compute_ipc"] <= row["issue_width"] == 2
    for send in ("pio", "dma"):
        small, large = rows[(send, 8)], rows[(send, 2048)]
        assert small["oneway_cycles"] < large["oneway_cycles"]
        assert small["messages_per_us"] > large["messages_per_us"]
    # the NI fetching a 2 KiB payload in memory frees the sender sooner than PIO's 256 writes
    assert rows[("dma", 2048)]["sender_ready_cycles"] < rows[("pio", 2048)]["sender_ready_cycles"]
    summary = (tmp_path / "pio-dma" / "summary.md").read_text()
    assert "## Answer" in summary and "DMA beats PIO from" in summary
    assert (tmp_path / "pio-dma" / "pio-dma-4ctx.png").stat().st_size > 10_000


def test_send_buffering_quick(tmp_path):
    """The quick sweep (DRAM payloads at 32 Gb/s, 2, 4 and 16 lines ahead; a payload of lines
    from DRAM and the caches at 16 Gb/s, 4 ahead), on Icarus: its System is a build of its own,
    shared with the system test of the tunables. What must hold: every point scored with no
    mismatch; bubbles never grow with depth, 16 lines leave none, two leave some in every size,
    and latency never grows with depth; a send holds more lines of a deeper buffer, never more
    than the depth; 4 lines keep a mixed payload at 16 Gb/s."""
    done = sweep("send-buffering", sim="icarus", workers=1, out=tmp_path)
    assert done.failed == []
    (mixed,) = [row for row in done.rows if row["payload"] == "mixed"]
    assert mixed["memory_cycles"] == 120 and mixed["bubbles_2048"] == 0, mixed
    rows = sorted((row for row in done.rows if row["payload"] == "dram"),
                  key=lambda row: row["depth"])
    assert [row["depth"] for row in rows] == [2, 4, 16]
    for size in send_buffering.SIZES:
        bubbles = [row[f"bubbles_{size}"] for row in rows]
        latency = [row[f"latency_{size}"] for row in rows]
        assert bubbles == sorted(bubbles, reverse=True) and bubbles[-1] == 0 < bubbles[0], size
        assert latency == sorted(latency, reverse=True), size
    # a send holds more of a deeper buffer, never more than the depth
    held = [row["buffer_lines"] for row in rows]
    assert held == sorted(held) and all(0 < row["buffer_lines"] <= row["depth"] for row in rows)
    summary = (tmp_path / "send-buffering" / "summary.md").read_text()
    assert "| dram | 4 | 32 | 16 | 4 |" in summary and "| mixed | 8 | 16 | 4 | 2 |" in summary
    assert (tmp_path / "send-buffering" / "send-buffering.png").stat().st_size > 10_000


def test_interrupt_baseline_quick(tmp_path):
    """The quick sweep (the behavioural model): at the Ultra-1 with user code filling the L2,
    the paper's interrupt (17,500 cycles within 10 %, a miss share of 80 to 95 %) beside the
    paper's row; with no working set far less; the 2 GHz node with a full L2 pays more cycles
    for the same misses."""
    done = sweep("interrupt-baseline", workers=1, out=tmp_path)
    assert done.failed == []
    rows = {(row["machine"], row["working_set"]): row for row in done.rows}
    assert sorted(rows) == [("node", 0.0), ("node", 1.0), ("ultra1", 0.0), ("ultra1", 1.0)]
    full = rows[("ultra1", 1.0)]
    assert abs(full["cycles"] - 17_500) <= 1_750 and 0.80 <= full["miss_share"] <= 0.95, full
    assert rows[("ultra1", 0.0)]["cycles"] * 3 < full["cycles"]
    assert rows[("ultra1", 0.0)]["l2_misses"] == rows[("node", 0.0)]["l2_misses"] == 0
    assert rows[("node", 1.0)]["l2_misses"] == full["l2_misses"] == 380
    assert rows[("node", 1.0)]["cycles"] > full["cycles"]
    summary = (tmp_path / "interrupt-baseline" / "summary.md").read_text()
    assert "| the paper | 17,500 | 119 | ~380 | 103 | 87% |" in summary
    assert "behavioural model, seed 1, quick sweep" in summary
    assert (tmp_path / "interrupt-baseline" / "interrupt-baseline.png").stat().st_size > 10_000


def test_notification_quick(tmp_path):
    """The quick sweep on Verilator (every mechanism at light load): every point scored with no
    mismatch and every message measured; each hardware mechanism's slowest message below the
    interrupt path's fastest, and the interrupt path's cost its own (the kernel's instructions
    at least)."""
    done = sweep("notification", workers=1, out=tmp_path)
    assert done.failed == []
    rows = {row["mode"]: row for row in done.rows}
    assert sorted(rows) == sorted(notification.MODES)
    for row in rows.values():
        assert row["count"] == notification.QUICK_COUNT
        assert len(str(row["latencies"]).split()) == row["count"] - notification.WARM_UP
        assert row["latency_p50"] <= row["latency_p99"] <= row["latency_max"]
        assert row["compute_ipc"] is None and row["messages_per_us"] > 0
    interrupt = rows["interrupt"]
    assert all(rows[mode]["latency_max"] < interrupt["latency_p50"]
               for mode in notification.HARDWARE)
    assert interrupt["latency_p50"] > sum(step.instructions for step in kernel.STEPS)
    summary = (tmp_path / "notification" / "summary.md").read_text()
    assert "every hardware mechanism's slowest message" in summary and "is below" in summary
    assert (tmp_path / "notification" / "notification.png").stat().st_size > 10_000


def test_an_experiment_without_its_run_cannot_be_made():
    class Unfinished(Experiment):
        def points(self, full):
            return []

        def report(self, rows, directory, *, config):
            return ""

    with pytest.raises(TypeError, match="abstract method run"):
        Unfinished()
