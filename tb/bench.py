"""Co-simulation speed: cycles per second of the Fabric testbench against a bare clock loop.

``python -m tb.bench [--nodes N] [--messages M] [--seed S]`` (``make bench``) runs, on each
simulator, the Fabric's random-traffic test with and without backpressure and a cocotb loop that
only awaits clock edges on the same design, and prints the cycles/s of each and their ratio.
"""

import argparse

from .runner import SIMULATORS, build, run
from .testbenches import get_testbench


def measure(sim, *, nodes, messages, seed):
    """Return ``{test: figures}`` for the Fabric tests and the clock loop on ``sim``."""
    bench = get_testbench("fabric")
    design = build(bench.component, {"nodes": nodes}, sim=sim)
    loop = run(design, "tb.clock_loop_tests", seed=seed, label="bench-loop")
    traffic = run(design, bench.module, seed=seed, options={"messages": messages},
                  label="bench-traffic", only="random_traffic")
    for result in (loop, traffic):
        if not result.passed:
            raise SystemExit(f"{sim}: {result.message or result.tests}; see {result.log}")
    return {**loop.results, **traffic.results}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--messages", type=int, default=300, help="messages per input")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"Fabric, {args.nodes} nodes, {args.messages} messages per input, seed {args.seed}")
    print(f"{'simulator':10} {'test':38} {'cycles':>8} {'cycles/s':>9} {'of loop':>8}")
    for sim in SIMULATORS:
        figures = measure(sim, nodes=args.nodes, messages=args.messages, seed=args.seed)
        loop_rate = figures["clock_loop"]["cycles_per_s"]
        for test, result in figures.items():
            share = result["cycles_per_s"] / loop_rate
            print(f"{sim:10} {test:38} {result['cycles']:8} {result['cycles_per_s']:9} "
                  f"{share:8.0%}")


if __name__ == "__main__":
    main()
