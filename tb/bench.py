"""Co-simulation speed, measured in one run on this machine (``make bench``).

One table, for Icarus and Verilator:

* the bare cocotb clock loop on the smallest component (the arbiter): what cocotb itself costs;
* the 2-node System with the clock only (``tb.clock_loop_tests``, no other Python coroutine);
* the same System Verilog under a native C++ harness that only toggles the clock, built with
  the same Verilator options (Verilator only): the limit the cocotb build is measured against;
* the 2-node demo (the 8 ping-pong runs of ``smtni demo``, cycles over wall time in all);
* a 4-node random scenario (``examples/random4.toml`` scaled to ``--messages``);

each in cycles/s and as a share of the System's clock-only figure (of its own node count); then
the build time of the 2-node and 4-node System (fresh builds, timed here). Under the table, each
target (DESIGN §8's, and the 4-node random run at half its clock-only speed), met or not.
"""

import argparse
import json
import shutil
import subprocess
import time
import tomllib

from behavioral.scenario import parse

from . import cli
from .progress import status
from .runner import (CXX_OPT, LINT_WAIVERS, PROJECT_ROOT, SIM_BUILD, SIMULATORS, VERILATOR_ARGS,
                     build, digest, run, verilator_root, write_verilog)

NATIVE_MAIN = """\
// Clock-only harness: reset for two cycles, then toggle clk; print cycles/s as JSON.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include "Vtop.h"
#include "verilated.h"

int main(int argc, char** argv) {
    long cycles = argc > 1 ? atol(argv[1]) : 100000;
    VerilatedContext context;
    Vtop top{&context};
    top.rst = 1;
    for (int i = 0; i < 4; ++i) { top.clk = i & 1; top.eval(); }
    top.rst = 0;
    auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < cycles; ++i) { top.clk = 0; top.eval(); top.clk = 1; top.eval(); }
    std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    printf("{\\"cycles\\": %ld, \\"wall_s\\": %.3f, \\"cycles_per_s\\": %.0f}\\n",
           cycles, wall.count(), cycles / wall.count());
    top.final();
    return 0;
}
"""


def clock_only(component, params, sim, cycles):
    """Return cycles/s of the bare cocotb clock loop on ``component``."""
    design = build(component, params, sim=sim)
    result = run(design, "tb.clock_loop_tests", seed=1, options={"cycles": cycles},
                 label="bench-clock")
    if not result.passed:
        raise SystemExit(f"{component} on {sim}: {result.message}; see {result.log}")
    return result.results["clock_loop"]["cycles_per_s"]


def native(params, cycles):
    """Build the System's Verilog with the native harness, from nothing; return (cycles/s,
    build seconds)."""
    root = verilator_root()
    directory = SIM_BUILD / "native" / f"system-{digest(json.dumps(params, sort_keys=True))[:10]}"
    shutil.rmtree(directory, ignore_errors=True)
    source = write_verilog("system", params, directory / "system.v")
    main = directory / "main.cpp"
    main.write_text(NATIVE_MAIN)
    start = time.monotonic()
    with status(f"verilator: building the native harness in {directory.relative_to(PROJECT_ROOT)}"):
        subprocess.run([str(root / "bin" / "verilator"), "--cc", "--exe", "-Mdir", str(directory),
                        "--top-module", "system", "--prefix", "Vtop", *VERILATOR_ARGS,
                        str(LINT_WAIVERS), str(source), str(main), "-o", "harness"],
                       check=True, capture_output=True)
        subprocess.run(["make", "-j2", "-C", str(directory), "-f", "Vtop.mk",
                        "CFG_CXXFLAGS_PCH_I=-include", f"OPT_FAST={CXX_OPT}",
                        f"OPT_SLOW={CXX_OPT}", f"OPT_GLOBAL={CXX_OPT}"],
                       check=True, capture_output=True)
    built_s = time.monotonic() - start
    output = subprocess.run([str(directory / "harness"), str(cycles)], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output)["cycles_per_s"], built_s


def fresh_build_seconds(params, sim):
    """Build the System with ``params`` from nothing (no object file of an earlier build is
    reused); return the seconds it took."""
    start = time.monotonic()
    build("system", params, sim=sim, fresh=True)
    return time.monotonic() - start


def demo_speed(sim, seed):
    """Run the demo's 8 runs; return total cycles over total wall time."""
    cycles = wall = 0
    for mode in cli.DEMO_MODES:
        for send in ("pio", "dma"):
            document = cli.demo_scenario(mode, send, count=8)
            summary = _scenario(document, sim, seed, f"bench-demo-{mode}-{send}")
            cycles += summary["cycles"]
            wall += summary["wall_s"]
    return round(cycles / wall)


def random_speed(sim, seed, messages):
    """Run ``examples/random4.toml`` with ``messages`` messages; return its cycles/s."""
    document = tomllib.loads((PROJECT_ROOT / "examples" / "random4.toml").read_text())
    pio, dma = document["traffic"]
    pio["count"] = messages * 3 // 5
    dma["count"] = messages - pio["count"]
    return _scenario(document, sim, seed, "bench-random4")["cycles_per_s"]


def _scenario(document, sim, seed, label):
    scenario = parse(document, seed=seed)
    result, _, summary, mismatches = cli._run_scenario(document, scenario, sim=sim, seed=seed,
                                                       waves=False, label=label)
    if not result.passed or summary.get("mismatches", 1):
        raise SystemExit(f"{label} on {sim}: {result.message or mismatches[:1]}; "
                         f"see {result.log}")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100_000, help="clock-only cycles")
    parser.add_argument("--messages", type=int, default=1000,
                        help="messages of the 4-node random scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sim", choices=SIMULATORS, action="append",
                        help="measure only this simulator (repeatable)")
    args = parser.parse_args(argv)
    two, four = {"nodes": 2}, {"nodes": 4}
    rows, builds, speed = [], {}, {}
    for sim in args.sim or SIMULATORS:
        for nodes, params in ((2, two), (4, four)):
            builds[sim, nodes] = fresh_build_seconds(params, sim)
        # Icarus evaluates the System about 40 times slower: fewer cycles, same figure.
        cycles = args.cycles if sim == "verilator" else args.cycles // 20
        speed[sim, "clock2"] = clock_only("system", two, sim, cycles)
        speed[sim, "clock4"] = clock_only("system", four, sim, cycles)
        speed[sim, "loop"] = clock_only("arbiter", {}, sim, args.cycles)
        if sim == "verilator":
            speed[sim, "native"], builds["native", 2] = native(two, args.cycles * 5)
        speed[sim, "demo"] = demo_speed(sim, args.seed)
        speed[sim, "random"] = random_speed(sim, args.seed, args.messages)
        rows += [(sim, "clock loop, arbiter (no design to speak of)", "loop", "clock2"),
                 (sim, "2-node System, clock only", "clock2", "clock2"),
                 *([(sim, "2-node System, native C++ harness", "native", "clock2")]
                   if sim == "verilator" else []),
                 (sim, "2-node demo (8 ping-pong runs)", "demo", "clock2"),
                 (sim, "4-node System, clock only", "clock4", "clock4"),
                 (sim, f"4-node random, {args.messages} messages", "random", "clock4")]
    print(f"\n{'simulator':10} {'run':44} {'cycles/s':>9} {'of clock-only':>14}")
    for sim, name, key, base in rows:
        rate = speed[sim, key]
        print(f"{sim:10} {name:44} {rate:9} {rate / speed[sim, base]:14.0%}")
    print(f"\n{'build':10} {'nodes':>5} {'seconds':>8}")
    for (sim, nodes), seconds in builds.items():
        print(f"{sim:10} {nodes:5} {seconds:8.0f}")
    if "verilator" not in (args.sim or SIMULATORS):
        return
    print("\ntargets (DESIGN §8, and the 4-node random run at half its clock-only speed)")
    for text, value, met in _targets(speed, builds):
        print(f"  {'met    ' if met else 'not met'}  {text}: {value}")


def _targets(speed, builds):
    """Yield (target, measured, met) for the Verilator figures."""
    def share(key, base):
        return speed["verilator", key] / speed["verilator", base]
    yield ("cocotb clock-only >= 50 % of the native harness",
           f"{1 / share('native', 'clock2'):.0%}", 1 / share("native", "clock2") >= 0.5)
    yield ("2-node demo >= 20,000 cycles/s", f"{speed['verilator', 'demo']:,}",
           speed["verilator", "demo"] >= 20_000)
    yield ("2-node demo >= 50 % of clock-only", f"{share('demo', 'clock2'):.0%}",
           share("demo", "clock2") >= 0.5)
    yield ("4-node random >= 50 % of clock-only", f"{share('random', 'clock4'):.0%}",
           share("random", "clock4") >= 0.5)
    for nodes, limit in ((2, 90), (4, 120)):
        seconds = builds["verilator", nodes]
        yield (f"{nodes}-node build <= {limit} s", f"{seconds:.0f} s", seconds <= limit)


if __name__ == "__main__":
    main()
