"""Behavioural kernel interrupt path: what one network interrupt costs a node, step by step, run
through the node's own memory hierarchy.

The paper's motivating measurement (``seed-paper.txt``, section 1): on a 147 MHz Ultra-1 under
Solaris 2.5.1, a network interrupt for a minimum-size packet takes about 119 us (17,500 cycles)
when user code fills the L2; about 380 L2 misses at ~270 ns each are 103 us of it (87 %); the
rest is the pipeline flush, the trap, saving state, querying the NI and the OS deciding what to
do; and the interrupted process may see up to another 380 misses when it runs again.

Model
    The path is a sequence of :class:`Step`. Each runs ``instructions`` at ``cpi`` cycles each
    (its L1 hits included), waits ``fixed_cycles`` (the pipeline flush) and ``device_reads``
    uncached reads of the NI's registers at ``device_read_ns`` each, and touches its footprint
    once: ``code_lines`` lines of kernel text and ``data_lines`` lines of kernel data, each a
    load through :class:`behavioral.memory.MemoryHierarchy` (code through the same L1 as data:
    the model has one). A touch that misses the L1 stalls the step for what the hierarchy says
    beyond an L1 hit: an L2 hit, or a DRAM fill, an *L2 miss*. The kernel's lines are the same on
    every interrupt (its text from :data:`KERNEL_TEXT`, its data from :data:`KERNEL_DATA`), so
    they stay cached unless something evicts them: the misses come from what the user's working
    set left in the caches, not from a constant.

Where the numbers come from
    The paper gives only totals, so the totals are calibrated to it and the split among the steps
    is an estimate of a SPARC kernel's interrupt path, in the proportions of its parts:

    * the footprint, 210 code and 170 data lines (24 KiB), is the paper's ~380 L2 misses: with
      user code filling the L2, every line of the path misses;
    * the work besides the misses, 2,000 instructions at a CPI of 1.0 (the 2-issue, in-order
      UltraSPARC running branchy kernel code), a 30-cycle flush and trap entry and 4 device
      reads at 0.5 us (uncached reads across the SBus), is 2,326 cycles: the paper's rest,
      119 - 103 = 16 us, is 2,350 cycles at 147 MHz;
    * the split: the trap (the trap table, the flush), saving state (the register windows
      spilled to the stack, the trap frame), the interrupt dispatch (the vector, the nexus and
      the driver's handler), the NI query (the driver reading the NI's status), the OS's
      decision (finding the process and its endpoint, deciding a wake-up or a signal), the
      wake-up or signal delivery (the scheduler's run queue, the signal frame) and the return
      from the trap; the largest footprints go to the decision and the wake-up, the C code of
      the kernel proper.

    :data:`ULTRA1` gives the Ultra-1's hierarchy (16 KiB direct-mapped L1, 512 KiB
    direct-mapped L2 at 3 cycles, memory at 252 ns: an L2 miss stalls 40 cycles, 272 ns, the
    paper's ~270 ns).

On a simulated node
    :class:`KernelPath` runs the path on a node's own hierarchy: the OS of an RTL System takes it
    for each arrival at an endpoint armed with INTERRUPT (:class:`behavioral.os.OS`), with the
    kernel's lines in the kernel's own memory (:data:`NODE_KERNEL_TEXT`), so the misses, and the
    user lines they evict, are the node's. :class:`InterruptPath` runs it beside a user program
    walking a working set, for the baseline experiment.
"""

import random
from dataclasses import dataclass

from .memory import MemoryHierarchy

__all__ = ["Step", "STEPS", "ULTRA1", "ON_DIE", "KERNEL_TEXT", "KERNEL_DATA", "USER_BASE",
           "NODE_KERNEL_TEXT", "NODE_KERNEL_DATA", "KernelPath", "InterruptPath", "Interrupted"]

#: The first physical line of the kernel's text, of its data, and of the user's working set.
KERNEL_TEXT = 0x10_0000
#: (half an Ultra-1 L2 away from the text's sets: text and data do not collide in it)
KERNEL_DATA = 0x18_1000
USER_BASE = 0x40_0000
#: The kernel's text and data lines on a simulated node: below the lowest frame
#: :class:`behavioral.vm.AddressSpaces` hands out (PA 1 MiB, the kernel's own memory).
NODE_KERNEL_TEXT = 0x0400
NODE_KERNEL_DATA = 0x0C00


@dataclass(frozen=True)
class Step:
    """One step of the interrupt path (see the module docstring)."""
    name: str
    instructions: int
    code_lines: int
    data_lines: int
    fixed_cycles: int = 0
    device_reads: int = 0


#: The steps of a network interrupt, in order.
STEPS = (
    Step("trap and pipeline flush", instructions=40, code_lines=4, data_lines=2,
         fixed_cycles=30),
    Step("state save", instructions=250, code_lines=10, data_lines=30),
    Step("interrupt dispatch", instructions=250, code_lines=30, data_lines=20),
    Step("NI query", instructions=150, code_lines=20, data_lines=12, device_reads=4),
    Step("OS decision", instructions=550, code_lines=80, data_lines=60),
    Step("wake-up or signal delivery", instructions=600, code_lines=60, data_lines=40),
    Step("return from the trap", instructions=160, code_lines=6, data_lines=6),
)

#: The Ultra-1 of the paper's measurement: its clock, hierarchy and device reads.
ULTRA1 = {"core_ghz": 0.147, "hierarchy": dict(l1_bytes=16384, l1_ways=1, l1_hit_cycles=1,
                                               l2_bytes=524288, l2_ways=1, l2_hit_cycles=3,
                                               dram_latency_ns=252.0),
          "device_read_ns": 500.0, "cpi": 1.0}
#: The DESIGN's node: the NI on the die (a register read 10 ns), the path's CPI.
ON_DIE = {"device_read_ns": 10.0, "cpi": 1.0}


@dataclass
class Interrupted:
    """What one interrupt cost: per step and in total (cycles, the L2 misses, the cycles those
    stalled), and the user's refill misses afterwards."""
    steps: list
    cycles: int
    l2_misses: int
    miss_cycles: int
    refill_misses: int = 0

    @property
    def miss_share(self):
        return self.miss_cycles / self.cycles if self.cycles else 0.0


class KernelPath:
    """The interrupt path run through ``hierarchy``, a node's own caches.

    Parameters
    ----------
    hierarchy : :class:`behavioral.memory.MemoryHierarchy`
        Its loads go there (an L1 miss completes at once: the kernel's lines are never in the
        message buffer); its clock converts ``device_read_ns``.
    device_read_ns : float
        An uncached read of the NI's registers.
    cpi : float
        Cycles per instruction of the path's instructions.
    steps : tuple of Step
    text, data : int
        The first line of the kernel's text and of its data.

    Attributes
    ----------
    taken : list of :class:`Interrupted`
        Every run of the path, in order.
    """

    def __init__(self, hierarchy, *, device_read_ns, cpi=1.0, steps=STEPS, text=KERNEL_TEXT,
                 data=KERNEL_DATA):
        self.hierarchy = hierarchy
        self.device_read_cycles = round(device_read_ns * hierarchy.core_ghz)
        self.cpi = cpi
        self.steps = steps
        self.text, self.data = text, data
        self.taken = []

    @classmethod
    def on_node(cls, hierarchy):
        """The path of a simulated node (DESIGN's: the NI on the die) on ``hierarchy``, its lines
        in the kernel's memory (:data:`NODE_KERNEL_TEXT`, :data:`NODE_KERNEL_DATA`)."""
        return cls(hierarchy, **ON_DIE, text=NODE_KERNEL_TEXT, data=NODE_KERNEL_DATA)

    def load(self, line):
        """Load ``line``; return (stall cycles beyond an L1 hit, whether it missed the L2)."""
        access = self.hierarchy.load_now(line)
        return access.cycles - self.hierarchy.l1.hit_cycles, access.level == "dram"

    def preload(self):
        """Bring the path's lines into the caches in no simulated time, as the interrupts of a
        machine that has been up left them (:meth:`behavioral.memory.MemoryHierarchy.preload`)."""
        self.hierarchy.preload(self.lines())

    def lines(self):
        """Every line the path touches: its text, then its data."""
        code = sum(step.code_lines for step in self.steps)
        data = sum(step.data_lines for step in self.steps)
        return [*range(self.text, self.text + code), *range(self.data, self.data + data)]

    def run(self):
        """Run the path once; return its :class:`Interrupted` (without refill misses)."""
        text, data = self.text, self.data
        rows, total, misses, miss_cycles = [], 0, 0, 0
        for step in self.steps:
            cycles = (round(step.instructions * self.cpi) + step.fixed_cycles
                      + step.device_reads * self.device_read_cycles)
            step_misses = step_miss_cycles = 0
            lines = [*range(text, text + step.code_lines), *range(data, data + step.data_lines)]
            text, data = text + step.code_lines, data + step.data_lines
            for line in lines:
                stall, missed = self.load(line)
                cycles += stall
                if missed:
                    step_misses += 1
                    step_miss_cycles += stall
            rows.append({"step": step.name, "cycles": cycles, "l2_misses": step_misses,
                         "miss_cycles": step_miss_cycles})
            total, misses, miss_cycles = (total + cycles, misses + step_misses,
                                          miss_cycles + step_miss_cycles)
        done = Interrupted(rows, total, misses, miss_cycles)
        self.taken.append(done)
        return done


class InterruptPath:
    """The interrupt path of one node, and a user program walking its working set on it.

    Parameters
    ----------
    core_ghz : float
        The core clock (device reads and DRAM latency are in ns).
    hierarchy : dict
        :class:`behavioral.memory.MemoryHierarchy` parameters (``core_ghz`` is added).
    working_set_lines : int
        The user's working set: lines from :data:`USER_BASE` it loads each turn, in an order
        drawn anew each turn from ``seed`` (a program, not a scan in order).
    device_read_ns, cpi, steps
        As :class:`KernelPath`'s.
    seed : int or str
    """

    def __init__(self, *, core_ghz, hierarchy, working_set_lines, device_read_ns, cpi=1.0,
                 steps=STEPS, seed=1):
        if not (isinstance(working_set_lines, int) and working_set_lines >= 0):
            raise ValueError(f"working_set_lines {working_set_lines!r} must be a non-negative "
                             f"integer")
        self.hierarchy = MemoryHierarchy(core_ghz=core_ghz, **hierarchy)
        self.kernel = KernelPath(self.hierarchy, device_read_ns=device_read_ns, cpi=cpi,
                                 steps=steps)
        self.working_set = list(range(USER_BASE, USER_BASE + working_set_lines))
        self.rng = random.Random(seed)

    def user_turn(self):
        """The user program loads each line of its working set once; return its L2 misses."""
        before = self.hierarchy.counters["l2_misses"]
        order = list(self.working_set)
        self.rng.shuffle(order)
        for line in order:
            self.kernel.load(line)
        return self.hierarchy.counters["l2_misses"] - before

    def interrupt(self):
        """Run the path once; return its :class:`Interrupted` (without refill misses)."""
        return self.kernel.run()

    def measure(self, warm_turns=2):
        """The steady state: the user's turns and an interrupt ``warm_turns`` times, then a
        turn, the interrupt measured, and the turn after it (its refill misses)."""
        for _ in range(warm_turns):
            self.user_turn()
            self.interrupt()
        self.user_turn()
        interrupted = self.interrupt()
        interrupted.refill_misses = self.user_turn()
        return interrupted
