"""Soaks: random N-node System runs with injected link faults, scored by the reference NIs
(``smtni soak``, ``make soak``).

Each seed makes one random scenario (:func:`soak_document`) and runs it on a System built with a
:class:`rtl.faults.LinkFaultInjector` on every link from the Fabric to an NI and small tables (8
TLB entries, a 16-line message buffer, 2 SMT contexts), so that everything DESIGN §7 lists
happens under load:

* 2 to 8 nodes with 1 to 3 processes each, polling and every NI notification mode among them
  (:data:`MODES`), some of them slow consumers (``work`` after each message) so that rings fill
  and messages are held;
* random traffic between processes: 0 B to 2 KiB, PIO and DMA, most asking to notify; a few
  land outside the receiver's window (the OS rejects the miss), come from an unmapped buffer
  (the OS rejects the DMA miss) or carry a wrong key (discarded);
* NI TLBs not prefilled: every first touch of a page misses and the OS fills it;
* more threads than contexts, so that a SPAWN evicts a thread or waits for the OS;
* random backpressure on every node-side port and jitter on every memory answer;
* link faults (a flipped bit, a truncation, a flit appended) on a share of the messages.

Every run is scored as ``smtni run`` scores one (:mod:`tb.system_scoreboard`); a fault must end
as DESIGN §7 says (the message discarded, memory untouched, the fault counted and reported) with
nothing else lost. Many seeds run side by side on a Dask ``LocalCluster``; each seed is printed
and replays alone with ``smtni soak --seed S`` and the same ``--nodes`` and ``--messages``.
"""

import json
import random
import time
from collections import Counter
from pathlib import Path

from behavioral.scenario import parse
from rtl.layouts import FLIT_BYTES, MAX_PAYLOAD_BYTES

__all__ = ["SYSTEM_PARAMS", "MODES", "MAX_SOAK_NODES", "soak_document", "run_seed", "run_seeds",
           "total", "command"]

#: The most nodes a soak runs (a Verilator build of 8 nodes takes a few minutes).
MAX_SOAK_NODES = 8

#: The System every soak builds (one build per node count serves every seed).
SYSTEM_PARAMS = {"link_faults": 1, "contexts": 2, "tlb_entries": 8, "lines": 16,
                 "tx_lines": 4, "rx_lines": 12, "lock_entries": 8, "lock_waiters": 8}
#: Knobs of the system testbench for every soak run.
OPTIONS = {"tlb_prefill": 0, "backpressure": 10, "memory_jitter": 12}
_WINDOW = {"va": 0x1000_0000, "bytes": 0x10000}
#: The receivers' modes: polling and the NI's three. Not INTERRUPT: the OS's interrupt path, a
#: few thousand cycles an arrival, would stretch every soak (tests/test_system_cocotb.py runs it).
MODES = ("none", "lock", "branch", "spawn")


def soak_document(seed, *, nodes, messages):
    """Return the scenario document (as :func:`behavioral.scenario.parse` takes it) of soak
    ``seed``: ``nodes`` nodes and ``messages`` random messages."""
    rng = random.Random(seed)
    processes = []
    for node in range(nodes):
        for endpoint in range(rng.randint(1, 3)):
            processes.append({
                "name": f"n{node}e{endpoint}", "node": node, "endpoint": endpoint,
                "notify": MODES[len(processes) % len(MODES)] if len(processes) < 4
                else rng.choice(MODES),
                "window": {**_WINDOW, "key": rng.randrange(1, 1 << 16)},
                "send_buffer": {"va": 0x2000_0000, "bytes": MAX_PAYLOAD_BYTES},
                **({"work": rng.choice((200, 800))} if rng.random() < 0.3 else {})})
    traffic = []
    for _ in range(messages):
        src, dst = rng.sample(processes, 2)
        size = FLIT_BYTES * (rng.randrange(9) if rng.random() < 0.5
                             else rng.randrange(MAX_PAYLOAD_BYTES // FLIT_BYTES + 1))
        # A BRANCH or SPAWN receiver consumes what its handlers are given: an entry that asks
        # for no notification would stay in its ring for good.
        message = {"from": src["name"], "to": dst["name"], "bytes": size,
                   "send": rng.choice(("pio", "dma")),
                   "notify": dst["notify"] in ("branch", "spawn") or rng.random() < 0.9}
        bad = rng.random()
        if bad < 0.01:
            message["va_offset"] = 0x100_0000          # outside every mapping: rejected
        elif bad < 0.02:
            message["key"] = dst["window"]["key"] ^ 1  # discarded: wrong key
        elif bad < 0.03 and message["send"] == "dma":
            message["local_va"] = 0x3000_0000          # an unmapped buffer: DMA rejected
        traffic.append(message)
    return {"system": {"nodes": nodes, "params": dict(SYSTEM_PARAMS),
                       "os": {"miss_cycles": 60, "tick_cycles": 4000}},
            "process": processes,
            "traffic": [{"pattern": "list", "messages": traffic}]}


def run_seed(seed, *, nodes, messages, sim, fault_percent, label=None):
    """Run soak ``seed`` on ``sim``; return its summary (see :func:`summarize`) with the
    mismatches' first lines."""
    from . import cli

    document = soak_document(seed, nodes=nodes, messages=messages)
    scenario = parse(document, seed=seed)
    started = time.perf_counter()
    result, _, summary, mismatches = cli._run_scenario(
        document, scenario, sim=sim, seed=seed, waves=False, label=label or f"soak-{seed}",
        options={**OPTIONS, "link_fault_percent": fault_percent,
                 "timeout_cycles": 4000 * messages + 200_000})
    return summarize(seed, messages, summary, mismatches, passed=result.passed,
                     wall_s=time.perf_counter() - started, log=str(result.log))


def summarize(seed, messages, summary, mismatches, *, passed, wall_s, log):
    """One seed's figures: ``messages``, ``delivered``, ``faults_injected`` (by kind),
    ``discarded`` (by fault), ``mismatches``, ``cycles``, ``wall_s``, ``passed``."""
    counts = summary.get("counts", {})
    errors = summary.get("errors", {})
    return {
        "seed": seed, "messages": messages, "passed": bool(passed),
        "delivered": summary.get("delivered", 0),
        "faults_injected": {name.removeprefix("link_fault_"): count
                            for name, count in counts.items() if name.startswith("link_fault_")},
        "outcomes": {**errors, **({"written_unconsumed": summary["written_unconsumed"]}
                                  if summary.get("written_unconsumed") else {})},
        "mismatches": summary.get("mismatches", 0) if summary else None,
        "first_mismatches": mismatches[:3],
        "cycles": summary.get("cycles", 0), "wall_s": round(wall_s, 2), "log": log,
    }


def total(results):
    """Add up the figures of many seeds."""
    faults, outcomes = Counter(), Counter()
    for result in results:
        faults.update(result["faults_injected"])
        outcomes.update(result["outcomes"])
    return {
        "seeds": [result["seed"] for result in results],
        "failed_seeds": [result["seed"] for result in results if not result["passed"]],
        "messages": sum(result["messages"] for result in results),
        "delivered": sum(result["delivered"] for result in results),
        "faults_injected": dict(faults), "outcomes": dict(outcomes),
        "mismatches": sum(result["mismatches"] or 0 for result in results),
        "cycles": sum(result["cycles"] for result in results),
        "wall_s": round(sum(result["wall_s"] for result in results), 1),
    }


def run_seeds(seeds, *, workers, on_result, **kwargs):
    """Run every seed of ``seeds`` (as :func:`run_seed` with ``kwargs``) on a Dask
    ``LocalCluster`` of ``workers`` processes; call ``on_result(result)`` as each ends, and
    return the results in seed order."""
    from distributed import Client, LocalCluster, as_completed

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        futures = [client.submit(run_seed, seed, pure=False, **kwargs) for seed in seeds]
        results = []
        for future in as_completed(futures):
            result = future.result()
            on_result(result)
            results.append(result)
    return sorted(results, key=lambda result: result["seed"])


def command(args, usage_error):
    """``smtni soak``: run the seeds ``args`` give, print each and the totals; return the exit
    status (1 if any seed failed). ``usage_error(text)`` makes the error for bad input."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeElapsedColumn

    from . import cli, runner

    if not 2 <= args.nodes <= MAX_SOAK_NODES:
        raise usage_error(f"--nodes {args.nodes}: a soak has 2 to {MAX_SOAK_NODES} nodes")
    if not 0 <= args.fault_rate <= 1:
        raise usage_error(f"--fault-rate {args.fault_rate}: give the chance per message, 0 to 1")
    first = random.randrange(1 << 31) if args.seed is None else args.seed
    seeds = list(range(first, first + args.seeds))
    kwargs = dict(nodes=args.nodes, messages=args.messages, sim=args.sim,
                  fault_percent=100 * args.fault_rate)
    print(f"smtni soak: {len(seeds)} seed(s) from {first}, {args.nodes} nodes, {args.messages} "
          f"messages each, link faults on {args.fault_rate:.1%} of messages, on {args.sim}",
          flush=True)
    document = soak_document(first, nodes=args.nodes, messages=1)
    runner.build("system", cli._system_params(parse(document, seed=first)), sim=args.sim)

    def report(result):
        faults = ", ".join(f"{count} {kind}" for kind, count in
                           sorted(result["faults_injected"].items())) or "none"
        print(f"seed {result['seed']}: {'PASS' if result['passed'] else 'FAIL'}, "
              f"{result['delivered']} of {result['messages']} delivered, faults injected: "
              f"{faults}; {result['mismatches']} mismatches, {result['cycles']} cycles in "
              f"{result['wall_s']} s (replay: smtni soak --seed {result['seed']} --nodes "
              f"{args.nodes} --messages {args.messages} --sim {args.sim} --fault-rate "
              f"{args.fault_rate})", flush=True)
        for text in result["first_mismatches"]:
            print(f"  mismatch: {text}")
        if not result["passed"] and not result["first_mismatches"]:
            print(f"  failed: see {result['log']}")

    if len(seeds) == 1:
        results = [run_seed(seeds[0], **kwargs)]
        report(results[0])
    else:
        console = Console(stderr=True)
        with Progress(TextColumn("soak"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task("seeds", total=len(seeds))

            def on_result(result):
                report(result)
                progress.advance(task)
            results = run_seeds(seeds, workers=args.workers, on_result=on_result, **kwargs)
    summary = total(results)
    print(f"total: {summary['messages']} messages, {summary['delivered']} delivered, faults "
          f"injected {summary['faults_injected'] or 'none'}, outcomes "
          f"{summary['outcomes'] or 'none'}; {summary['mismatches']} mismatches, "
          f"{summary['cycles']} cycles, {summary['wall_s']} s of runs; failed seeds: "
          f"{summary['failed_seeds'] or 'none'}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 1 if summary["failed_seeds"] else 0
