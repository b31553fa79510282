"""Experiments: sweeps over points of a parameter space, each point a run of the RTL scored by
its reference model, side by side on Dask (``smtni experiment``).

An :class:`Experiment` names its parameters and the figures it measures, lists its points (a
few for ``--quick``, the whole space for ``--full``), runs one point (:meth:`Experiment.run`,
on a Dask worker: a System run with the reference-NI scoreboard on, where a mismatch fails the
point) and reports the points' rows (:meth:`Experiment.report`: the tables and the answer as
Markdown, and PNG plots). :func:`sweep` runs the points that ``DIR/NAME/points.csv`` does not
hold yet, for the same parameters and seed, and writes:

* ``points.csv``: one row per point, its parameters, its seed and every figure, in the order of
  the points (so that a sweep on one worker and on two write the same file);
* ``summary.md``: the report of the sweep's points;
* the report's PNG plots.

By default a ``distributed.LocalCluster`` of ``workers`` processes starts and stops with the
sweep, after the simulator builds the points need are made here (one per set of build
parameters, which every worker of this machine then shares); ``scheduler`` runs the same sweep
on an existing Dask cluster, whose workers build what they need once per machine (builds are
cached and locked per directory: :func:`tb.runner.build`). A point that fails is reported with
its parameters and seed and the rest go on; it is left out of ``points.csv``, so a rerun runs it
again.
"""

import abc
import csv
import hashlib
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Experiment", "PointFailed", "Sweep", "EXPERIMENTS", "experiment", "sweep",
           "run_point", "run_scenario", "read_rows", "page", "command", "DEFAULT_SEED"]

#: The seed of a sweep unless ``--seed`` gives one: sweeps repeat by default.
DEFAULT_SEED = 1


class PointFailed(RuntimeError):
    """A point's run failed (a mismatch, a run that did not finish); the message says how and
    where its log is."""


class Experiment(abc.ABC):
    """One experiment: subclasses set the class attributes and the methods (a subclass without
    :meth:`points`, :meth:`run` or :meth:`report` cannot be made).

    Attributes
    ----------
    name : str
        As ``smtni experiment NAME`` takes it.
    title : str
        One line: what it measures.
    parameters : tuple of str
        The parameters of a point, in the order of ``points.csv``'s columns.
    figures : tuple of str
        What a point measures, in the order of the columns after ``seed``.
    simulated : bool
        Whether its points run on a simulator (``--sim``); False for a behavioural model alone.
    """

    name = None
    title = None
    parameters = ()
    figures = ()
    simulated = True

    @abc.abstractmethod
    def points(self, full):
        """Return the points (dicts of :attr:`parameters`) of the quick or the full sweep."""

    def builds(self, points, sim):
        """Return the simulator builds ``points`` need, as ``(component, params)`` pairs, each
        once: made before a local sweep starts."""
        return []

    @abc.abstractmethod
    def run(self, point, *, sim, seed, label):
        """Run ``point`` on ``sim`` with ``seed``; return its figures (a dict of
        :attr:`figures`). Raise :exc:`PointFailed` if the run fails."""

    @abc.abstractmethod
    def report(self, rows, directory, *, config):
        """Write the plots of ``rows`` (one per point, parameters and figures) into
        ``directory`` and return ``summary.md``'s text; ``config`` says how the sweep ran (one
        line, for the titles)."""


def run_scenario(document, *, sim, seed, label, options=None):
    """Run the scenario ``document`` on the RTL System with its scoreboard; return its records
    and summary.

    Raises
    ------
    PointFailed
        On a mismatch, a run that did not finish, or a message not delivered.
    """
    from behavioral.scenario import parse

    from .. import cli
    scenario = parse(document, seed=seed)
    result, records, summary, mismatches = cli._run_scenario(
        document, scenario, sim=sim, seed=seed, waves=False, label=label, options=options)
    if not result.passed or summary.get("mismatches", 1) or mismatches:
        raise PointFailed(f"{label}: {mismatches[0] if mismatches else result.message}"
                          f" (log {result.log})")
    undelivered = [record["id"] for record in records if record["status"] != "delivered"]
    if undelivered or len(records) != len(scenario.messages):
        raise PointFailed(f"{label}: messages {undelivered} of {len(scenario.messages)} not "
                          f"delivered (log {result.log})")
    return records, summary


def page(lines, images):
    """Return ``summary.md``'s text: ``lines``, then a blank line and each PNG of ``images``
    (names in the same folder) shown."""
    return "\n".join([*lines, "", *(f"![{name}]({name})" for name in images)]) + "\n"


def _registry():
    from .interrupt_baseline import InterruptBaseline
    from .message_cache import MessageCache
    from .notification import Notification
    from .pio_dma import PioDma
    from .send_buffering import SendBuffering
    return {experiment.name: experiment
            for experiment in (InterruptBaseline(), MessageCache(), Notification(), PioDma(),
                               SendBuffering())}


#: The experiments by name.
EXPERIMENTS = _registry()


def experiment(name):
    """Return the experiment called ``name``.

    Raises
    ------
    KeyError
        Naming the experiments there are.
    """
    if name not in EXPERIMENTS:
        raise KeyError(f"no experiment {name!r}; the experiments are "
                       f"{', '.join(EXPERIMENTS)} (smtni experiment --list)")
    return EXPERIMENTS[name]


def _key(point, seed, parameters):
    """A point's identity in ``points.csv``: its parameters as written there, and its seed."""
    return tuple(_text(point[name]) for name in parameters) + (str(seed),)


def _text(value):
    return "" if value is None else str(value)


def _value(text):
    """A CSV cell back as the value it was written from (int, float, str or None)."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_rows(path):
    """Return the rows of a ``points.csv`` (values as :func:`_value` reads them back), or []
    if there is none."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as file:
        return [{name: _value(text) for name, text in row.items()} for row in csv.DictReader(file)]


def run_point(name, point, *, sim, seed):
    """Run one point of experiment ``name`` (on a Dask worker): return ``{"figures": ...}``, or
    ``{"error": text}`` if it failed, so that one point's failure ends no other."""
    started = time.perf_counter()
    label = f"{name}-" + hashlib.sha256(json.dumps([point, seed], sort_keys=True)
                                        .encode()).hexdigest()[:10]
    try:
        figures = experiment(name).run(point, sim=sim, seed=seed, label=label)
    except PointFailed as failure:
        return {"error": str(failure)}
    except Exception:       # noqa: BLE001 (a point's bug is reported with it; the rest go on)
        return {"error": traceback.format_exc().strip().splitlines()[-1]}
    return {"figures": figures, "wall_s": time.perf_counter() - started}


@dataclass
class Sweep:
    """What :func:`sweep` did: the sweep's ``rows`` in point order (resumed and run), the
    points ``failed`` (``(point, text)``), how many points were ``resumed`` from
    ``points.csv``, and the ``wall_s`` of the whole sweep."""
    rows: list
    failed: list
    resumed: int
    wall_s: float
    directory: Path


def sweep(name, *, full=False, sim="verilator", seed=DEFAULT_SEED, workers=2, scheduler=None,
          out="results", on_point=None):
    """Run experiment ``name``'s points not yet in ``OUT/NAME/points.csv`` and write its files
    (see the module). ``on_point(point, result)`` is called as each point ends (``result`` as
    :func:`run_point` returns it). Return a :class:`Sweep`."""
    from distributed import Client, LocalCluster, as_completed

    from .. import runner

    chosen = experiment(name)
    started = time.perf_counter()
    directory = Path(out) / name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "points.csv"
    columns = [*chosen.parameters, "seed", *chosen.figures]
    earlier = [row for row in read_rows(path) if list(row) == columns]
    known = {_key(row, row["seed"], chosen.parameters): row for row in earlier}
    points = chosen.points(full)
    todo = [point for point in points if _key(point, seed, chosen.parameters) not in known]
    fresh, failed = {}, []

    def keep(point, result):
        if "error" in result:
            failed.append((point, result["error"]))
        else:
            row = {**point, "seed": seed, **{figure: result["figures"].get(figure)
                                              for figure in chosen.figures}}
            fresh[_key(point, seed, chosen.parameters)] = row
            _append(path, columns, row)
        if on_point is not None:
            on_point(point, result)

    if todo:
        if scheduler is None:
            for component, params in chosen.builds(todo, sim):
                runner.build(component, params, sim=sim)
            # (its dashboard on a free port, so that two sweeps at once do not collide)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
        else:
            cluster = None
        try:
            with Client(cluster if cluster is not None else scheduler, timeout="10s") as client:
                futures = {client.submit(run_point, name, point, sim=sim, seed=seed,
                                         pure=False): point for point in todo}
                for future in as_completed(futures):
                    keep(futures[future], future.result())
        finally:
            if cluster is not None:
                cluster.close()
    # The sweep's points in their order, then rows of other points that were there before.
    rows = []
    for point in points:
        key = _key(point, seed, chosen.parameters)
        if key in fresh or key in known:
            rows.append(fresh.get(key) or known[key])
    ours = {_key(row, row["seed"], chosen.parameters) for row in rows}
    others = [row for row in earlier if _key(row, row["seed"], chosen.parameters) not in ours]
    _write(path, columns, rows + others)
    config = (f"{sim if chosen.simulated else 'behavioural model'}, seed {seed}, "
              f"{'full' if full else 'quick'} sweep")
    (directory / "summary.md").write_text(chosen.report(rows, directory, config=config))
    return Sweep(rows=rows, failed=failed, resumed=len(points) - len(todo),
                 wall_s=time.perf_counter() - started, directory=directory)


def _append(path, columns, row):
    """Add ``row`` to ``points.csv`` at once, so that an interrupted sweep keeps it."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, columns)
        if new:
            writer.writeheader()
        writer.writerow({name: _text(row[name]) for name in columns})


def _write(path, columns, rows):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _text(row[name]) for name in columns})


def command(args, usage_error):
    """``smtni experiment``: list the experiments, or run one sweep with a progress bar and
    print where its files are; return the exit status (1 if a point failed).
    ``usage_error(text)`` makes the error for bad input."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    if args.list:
        width = max(map(len, EXPERIMENTS))
        for name, chosen in EXPERIMENTS.items():
            print(f"{name:<{width}}  {chosen.title}")
        return 0
    if args.name is None:
        raise usage_error("give an experiment's name, or --list to see them")
    try:
        chosen = experiment(args.name)
    except KeyError as error:
        raise usage_error(error.args[0]) from None
    if args.scheduler is not None and args.workers is not None:
        raise usage_error(f"--workers {args.workers} and --scheduler {args.scheduler}: the "
                          f"scheduler's cluster has its own workers; give one of them")
    if args.scheduler is not None and not args.scheduler.startswith(("tcp://", "tls://",
                                                                      "inproc://")):
        raise usage_error(f"--scheduler {args.scheduler!r} is no Dask address; give it as "
                          f"tcp://HOST:PORT")
    workers = args.workers or os.cpu_count() or 1
    seed = DEFAULT_SEED if args.seed is None else args.seed
    points = chosen.points(args.full)
    size = "full" if args.full else "quick"
    on = args.sim if chosen.simulated else "the behavioural model"
    print(f"smtni experiment {chosen.name}: {len(points)} points ({size}), on {on}, "
          f"seed {seed}, "
          f"{args.scheduler or f'{workers} local worker(s)'}; into {Path(args.out) / chosen.name}",
          flush=True)
    console = Console(stderr=True)
    with Progress(TextColumn(chosen.name), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("points", total=len(points))

        def on_point(point, result):
            progress.advance(task)
            where = ", ".join(f"{name} {point[name]}" for name in chosen.parameters)
            if "error" in result:
                progress.console.print(f"FAILED {where}, seed {seed}: {result['error']}",
                                       markup=False, highlight=False)
            elif not console.is_terminal:
                print(f"done {where} in {result['wall_s']:.1f} s", flush=True)

        try:
            done = sweep(chosen.name, full=args.full, sim=args.sim, seed=seed, workers=workers,
                         scheduler=args.scheduler, out=args.out, on_point=on_point)
        except OSError as error:
            if args.scheduler is not None:
                raise usage_error(f"--scheduler {args.scheduler}: no Dask scheduler answers "
                                  f"there ({error}); start one or leave --scheduler out") \
                    from None
            raise
        progress.update(task, completed=len(points))
    print(f"{len(done.rows)} of {len(points)} points in {done.directory / 'points.csv'} "
          f"({done.resumed} from an earlier sweep), {len(done.failed)} failed; "
          f"{done.wall_s:.1f} s; summary: {done.directory / 'summary.md'}")
    for point, text in done.failed:
        where = " ".join(f"{name}={point[name]}" for name in chosen.parameters)
        print(f"  failed: {where} seed {seed}: {text}")
    return 1 if done.failed else 0
