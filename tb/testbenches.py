"""The cocotb testbenches that ``smtni sim`` runs, with their knobs and defaults."""

from dataclasses import dataclass

__all__ = ["Testbench", "TESTBENCHES", "get_testbench"]


@dataclass(frozen=True)
class Testbench:
    """A component's cocotb test module and the testbench knobs it accepts (name -> default)."""
    component: str
    module: str
    options: dict
    summary: str


TESTBENCHES = {
    "fabric": Testbench(
        component="fabric",
        module="tb.fabric_tests",
        options={
            "messages": 60,            # messages per input in the random-traffic test
            "max_payload_bytes": 128,  # random payloads are 0..this many bytes
            "ready_percent": 70,       # output ready probability under backpressure
            "idle_percent": 20,        # input bubble probability under backpressure
            "drop_percent": 5,         # share of messages sent to nodes that do not exist
        },
        summary="random all-to-all traffic, full contention, no-contention rate and latency"),
    "tlb": Testbench(
        component="tlb",
        module="tb.tlb_tests",
        options={
            "lookups": 5000,           # lookups per port in the random test
            "command_percent": 30,     # chance of a management command per lookup pair
            "ready_percent": 70,       # response ready probability under backpressure
            "idle_percent": 20,        # request bubble probability under backpressure
        },
        summary="random fills, invalidations and lookups against the model; rate, latency, "
                "replacement"),
    "msgbuf": Testbench(
        component="msgbuf",
        module="tb.msgbuf_tests",
        options={
            "operations": 100_000,     # random operations over the two random tests
            "ready_percent": 70,       # probe answer and write-back ready probability
            "min_message_lines": 1,    # the measurement's smallest message, in lines
            "max_message_lines": 32,   # the measurement's largest message, in lines
            # (the working-set measurement of tb.msgcache_tests, run by smtni experiment
            # message-cache)
            "message_read_lines": 0,   # lines of each message the program reads, 0 for all
            "inject_into_l2": 0,       # 1: the buffer's write-backs go into the L2
            "working_set_messages": 6,  # messages, the first RING_SLOTS not measured
        },
        summary="random arrivals, core loads and stores, NI reads and TX staging against a "
                "flat reference memory; fill rate; the message cache's effect on DRAM traffic"),
    "locktable": Testbench(
        component="locktable",
        module="tb.locktable_tests",
        options={
            "operations": 20_000,      # random operations per random test
            "interleavings": 10_000,   # WAIT/SIGNAL pairs raced by the core model and the NI side
            "ready_percent": 70,       # output ready probability under backpressure
        },
        summary="random operations against the model; threads of the core model contending for "
                "mutexes and racing WAIT against SIGNAL; non-resident wake-ups; latency"),
    "notifier": Testbench(
        component="notifier",
        module="tb.notifier_tests",
        options={
            "arrivals": 5_000,         # completions in the random test
            "ready_percent": 70,       # output ready probability under backpressure
        },
        summary="every mode against the model with the core and OS models: BRANCH into a "
                "computing thread, queued arrivals, SPAWN free/evict/OS, non-resident targets; "
                "latency per mode"),
    "rxengine": Testbench(
        component="rxengine",
        module="tb.rxengine_tests",
        options={
            "messages": 60,            # messages, good and damaged, on the link
        },
        summary="corrupted, truncated and overlong messages among good ones straight onto the "
                "RX engine's link, against the reference NI"),
    "ni_axi": Testbench(
        component="ni_axi_nodes",
        module="tb.axi_tests",
        options={
            "lengths": 3,              # payload lengths per mode and path: 8, 64, 200, 2048 B
        },
        summary="two NIs in their AXI shells driven by cocotbext-axi only: messages in every "
                "mode, PIO and DMA, against the reference NI; SLVERR for refused accesses"),
    "system": Testbench(
        component="system",
        module="tb.system_tests",
        options={
            "scenario": None,          # the scenario document (smtni run gives it)
            "tlb_prefill": 1,          # fill the NI TLBs with every window before the run
            "timeout_cycles": 2_000_000,   # give up (and fail) after this many cycles
            "stall_cycles": 300_000,   # or after this many with no message sent, arrived or consumed
            "quiet_cycles": 200,       # run on after everything is settled: late duplicates show
            "lockstep": 0,             # step every core at every cycle (the event-driven oracle)
            "backpressure": 0,         # percent of cycles each node-side port holds back
            "memory_jitter": 0,        # up to this many cycles more for each memory answer
            "link_fault_percent": 0,   # chance per message of a link fault (link_faults=1 builds)
        },
        summary="a scenario's processes on n nodes: sends, deliveries and notifications against "
                "the reference NI; per-message cycle stamps (smtni run, smtni demo)"),
}


def get_testbench(name):
    """Return the testbench called ``name``; raise :exc:`ValueError` naming the choices."""
    try:
        return TESTBENCHES[name]
    except KeyError:
        raise ValueError(f"unknown testbench {name!r}; choose one of "
                         f"{', '.join(sorted(TESTBENCHES))}") from None
