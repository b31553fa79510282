"""cocotb test of the whole system: a scenario's processes on the RTL ``system`` with the
behavioural nodes, scored against the reference NI (run it with ``smtni run SCENARIO.toml``).

The scenario comes in the knob ``scenario`` (the TOML document as a dict); the result holds one
record per message and the run's summary (see :mod:`tb.system_tb`).
"""

import cocotb

from behavioral.scenario import parse

from .component_tb import knobs, seed_for
from .runner import record_result
from .system_tb import SystemTB


@cocotb.test()
async def scenario(dut):
    """Run the scenario until every message is settled; zero mismatches."""
    options = knobs("system")
    seed = seed_for("scenario")
    scenario = parse(options["scenario"], seed=cocotb.RANDOM_SEED)
    os_params = {name: value for name, value in scenario.os.items() if name != "miss_cycles"}
    driver_params = {name: value for name, value in scenario.os.items() if name == "miss_cycles"}
    tb = SystemTB(dut, seed=seed, scenario=scenario, tlb_prefill=bool(options["tlb_prefill"]),
                  os_params=os_params, driver_params=driver_params,
                  hierarchy_params=scenario.memory,
                  lockstep=bool(options["lockstep"]), backpressure=options["backpressure"],
                  memory_jitter=options["memory_jitter"],
                  link_fault_percent=options["link_fault_percent"])
    await tb.start()
    try:
        await tb.run(options["timeout_cycles"], options["quiet_cycles"], options["stall_cycles"])
    finally:
        record_result("scenario", {"messages": sorted(tb.records.values(), key=lambda r: r["id"]),
                                   "summary": tb.summary(),
                                   "first_mismatches": tb.mismatches[:10]})
    tb.check()
