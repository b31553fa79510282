"""Unit tests of the RX engine's writer (rtl/writer.py) in the Amaranth simulator: jobs and their
payload words offered as the packet queue does (the words as one stream), a MessageBuffer always
ready that releases each line in the cycle after its last word (or, held, one a cycle from an
edge on), and user code that moves a ring's head."""

import random

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.hdl import Value
from amaranth.sim import Simulator

from rtl.layouts import (COMPLETION_BYTES, PAGE_BITS, CompletionEntry, CompletionStatus,
                         RxFillBeat, RxJob, RxLineRequest, codec)
from rtl.params import silence_unused
from rtl.writer import SETTLING_JOBS, STATES, MessageWriter, _scan
from tests.sim import edges, fsm_states, run, stream_put, tracer, transfer

RING_PA, RING_VA = 0x8000_0040, 0x7f00_0000_1040


def job(*, words=1, endpoint=1, ring_log2=4, rejected=False, notify=True, seq=5,
        remote_va=0x1000_0f08):
    return codec(RxJob).pack(src_node=3, src_endpoint=2, dst_endpoint=endpoint, notify=notify,
                             rejected=rejected, length=8 * words, seq=seq,
                             remote_va=remote_va, metadata=0xbeef, stamp=1234,
                             ring_log2=ring_log2, ring_pa=RING_PA, ring_va=RING_VA,
                             ppn=0x222 | 0x333 << 20)


class Bench:
    def __init__(self, *, endpoints=4, head_at=None, lines_from=0, held=None, reset_at=None,
                 announce_at=None, release_at_last=False):
        self.dut = MessageWriter(endpoints=endpoints)
        self.head_at = head_at          # (edge, endpoint, head): user code consumes entries
        self.lines_from = lines_from    # no line is released before this edge
        self.held = held or range(0)    # nor at these edges
        self.reset_at = reset_at        # (edge, endpoint): the NI restarts the ring
        self.announce_at = announce_at  # the edges at which the buffer takes an announcement
        # each line released in the cycle of its last word (as the buffer does when the caches
        # have answered for it), not the cycle after
        self.release_at_last = release_at_last
        self.log = []

    def run(self, jobs, cycles=400):
        """Offer ``jobs``, each (job, words) or (job, words, edge before which it is not
        offered)."""
        dut = self.dut

        async def queue(ctx):
            for bits, _, *after in jobs:
                while after and len(self.log) < after[0]:
                    await ctx.tick()
                await stream_put(ctx, dut.job, bits)

        async def staging(ctx):
            for _, words, *_ in jobs:
                for index in range(words):
                    await stream_put(ctx, dut.words, 0x1111_0000 + index)

        async def memory(ctx):
            ctx.set(dut.rx_line.ready, self.announce_at is None or 0 in self.announce_at)
            ctx.set(dut.rx_data.ready, 1)
            ctx.set(dut.completion.ready, 1)
            edge = complete = 0
            while edge < cycles - 10:
                _, _, last = await ctx.tick().sample(transfer(dut.rx_data)
                                                     & dut.rx_data.payload.last)
                edge += 1
                if self.announce_at is not None:
                    ctx.set(dut.rx_line.ready, edge in self.announce_at)
                if self.release_at_last:
                    # (the inputs of this cycle are set: the staging testbench runs first)
                    last = ctx.get(dut.rx_data.valid) and ctx.get(dut.rx_data.payload.last)
                complete += last
                release = complete != 0 and edge >= self.lines_from and edge not in self.held
                complete -= release
                ctx.set(dut.lines_done, release)
                if self.head_at and self.head_at[0] == edge:
                    ctx.set(dut.ring_head[self.head_at[1]], self.head_at[2])
                if self.reset_at:
                    ctx.set(dut.ring_reset, (edge == self.reset_at[0]) << self.reset_at[1])

        watch = tracer(self.log, taken=transfer(dut.job), line=transfer(dut.rx_line),
                       line_bits=Value.cast(dut.rx_line.payload), beat=transfer(dut.rx_data),
                       beat_bits=Value.cast(dut.rx_data.payload),
                       completion=transfer(dut.completion),
                       entry=dut.completion.payload.entry, tail1=dut.ring_tail[1],
                       full=dut.count_ring_full_cycles, delivered=dut.count_delivered,
                       rejected=dut.count_rejected, offered=dut.rx_line.valid,
                       hint=dut.rx_next.valid, hint_addr=dut.rx_next.addr)
        run(dut, queue, staging, memory, watch, deadline_cycles=cycles)
        self.check_hints()

    def check_hints(self):
        """The MessageBuffer's "Announcing ahead", in every run: at each edge at which rx_next
        is valid, it names the announcement after the one offered then, or, with none offered,
        the next one (if there is one)."""
        taken = self.at("line")
        addrs = [line["addr"] for line in self.lines()]
        for edge, row in enumerate(self.log):
            if not row["hint"]:
                continue
            # the announcement offered at this edge is the first taken at it or after; the one
            # the hint names comes after that (with none offered, it is that one)
            after = [index for index, taken_at in enumerate(taken) if taken_at >= edge]
            named = after[1:] if row["offered"] else after
            if named:
                assert addrs[named[0]] == row["hint_addr"], (
                    f"edge {edge}: rx_next names line {row['hint_addr']:#x}, the announcement "
                    f"after is {addrs[named[0]]:#x}")

    def at(self, name):
        return edges(self.log, name)

    def lines(self):
        return [codec(RxLineRequest).unpack(self.log[edge]["line_bits"])
                for edge in self.at("line")]

    def beats(self):
        return [codec(RxFillBeat).unpack(self.log[edge]["beat_bits"]) for edge in self.at("beat")]


def test_a_job_is_written_then_settled_its_tail_advanced_and_its_completion_offered():
    """Two payload words crossing a line (0xf08..0xf17 is one line, at the frame of page 0),
    then the entry at the ring's slot 0; the tail advances and the completion is offered once
    the entry's line is released, the cycle after its last word."""
    bench = Bench()
    bench.run([(job(words=2), 2)])
    taken, = bench.at("taken")
    assert bench.at("line")[0] == taken + 1
    payload_line, entry_line = bench.lines()
    assert payload_line == dict(addr=(0x222 << PAGE_BITS | 0xf08) >> 6, words=0b0000_0110)
    entry_pa = RING_PA + 0x1000 * 0     # slot 0 of the ring
    assert entry_line["addr"] == entry_pa >> 6
    beats = bench.beats()
    assert [beat["data"] for beat in beats[:2]] == [0x1111_0000, 0x1111_0001]
    entry = codec(CompletionEntry).unpack(
        sum(beat["data"] << (64 * index) for index, beat in enumerate(beats[2:])))
    assert (entry["status"], entry["seq"], entry["length"], entry["landing_va"]) == (
        CompletionStatus.DELIVERED, 5, 16, 0x1000_0f08)
    completion, = bench.at("completion")
    last_beat = bench.at("beat")[-1]
    assert completion == last_beat + 1
    assert bench.log[completion]["entry"] == RING_VA
    # (the tail moves and the job is counted at the edge after)
    assert bench.log[completion + 1]["tail1"] == 0 and bench.log[completion + 2]["tail1"] == 1
    assert bench.log[-1]["delivered"] == 1


def test_a_job_whose_lines_were_released_before_its_record_was_readable_settles_on_its_count():
    """Each line released in the cycle of its last word: the entry's line is released as the
    job's record is written, so the record, readable from the next edge, settles then on the
    count of lines released alone (no release in that cycle); two jobs back to back, each with
    its completion at the edge after its entry's last word, its tail and count moving in the
    cycle after (seen from the edge after that)."""
    bench = Bench(release_at_last=True)
    bench.run([(job(words=2, seq=seq), 2) for seq in range(2)])
    beats = bench.at("beat")
    entry_words = [beats[5], beats[11]]
    assert bench.at("completion") == [edge + 1 for edge in entry_words]
    assert [bench.log[edge]["entry"] for edge in bench.at("completion")] == [
        RING_VA, RING_VA + COMPLETION_BYTES]
    tail = [bench.log[entry_words[0] + offset]["tail1"] for offset in (2, 3)]
    assert tail == [0, 1]
    assert bench.log[-1]["tail1"] == 2 and bench.log[-1]["delivered"] == 2


def test_a_rejected_job_writes_only_its_entry_and_the_next_entry_takes_the_next_slot():
    bench = Bench()
    bench.run([(job(rejected=True, words=4), 0), (job(words=1, notify=False), 1)])
    first_entry, payload_line, second_entry = bench.lines()
    assert first_entry["addr"] == RING_PA >> 6
    assert second_entry["addr"] == (RING_PA + COMPLETION_BYTES) >> 6
    assert payload_line["addr"] == (0x222 << PAGE_BITS | 0xf08) >> 6
    assert bench.log[-1]["rejected"] == 1 and bench.log[-1]["delivered"] == 1
    assert len(bench.at("completion")) == 1


def test_a_full_ring_holds_the_job_until_the_head_moves_counting_the_cycles():
    """A ring of 2 entries: the third job waits, counting each cycle, until user code moves the
    head at edge 100."""
    bench = Bench(head_at=(100, 1, 1))
    bench.run([(job(ring_log2=1, seq=seq), 1) for seq in range(3)])
    lines = bench.at("line")
    assert lines[-2] > 100 and lines[3] < 100
    assert bench.log[-1]["full"] > 80 and bench.log[-1]["delivered"] == 3


@pytest.mark.parametrize("rejected", [False, True], ids=["delivered", "rejected"])
@pytest.mark.parametrize("ring_log2", range(5))
def test_every_ring_size_takes_as_many_jobs_back_to_back_as_it_has_slots(ring_log2, rejected):
    """A ring of 2**k entries and 2**k + 1 jobs offered back to back (a job starts every other
    cycle, so each ring check comes within two cycles of the start before it): the first 2**k
    take slots 0, 1, ... at once, the last waits until user code moves the head at edge 150,
    then takes slot 0 again."""
    slots = 1 << ring_log2
    bench = Bench(head_at=(150, 1, 1))
    bench.run([(job(ring_log2=ring_log2, rejected=rejected, seq=seq), 0 if rejected else 1)
               for seq in range(slots + 1)])
    entries = [edge for edge, line in zip(bench.at("line"), bench.lines())
               if line["addr"] >> (12 - 6) == RING_PA >> 12]
    assert len(entries) == slots + 1
    assert entries[-2] < 150 < entries[-1]
    assert [bench.log[edge]["entry"] for edge in bench.at("completion")] == [
        RING_VA + COMPLETION_BYTES * (seq % slots) for seq in range(slots + 1)]


def test_the_next_job_waits_for_the_slot_the_job_in_the_sending_stage_took():
    """A ring of 1 entry: the second job is taken as the first's entry line is announced, while
    the first's words still go out, and finds the ring full with the first's slot; it waits,
    counting each cycle, until user code moves the head at edge 60 (which the ring check of a
    held job sees from the third cycle after), then goes into slot 0 again."""
    bench = Bench(head_at=(60, 1, 1))
    bench.run([(job(ring_log2=0, seq=seq), 1) for seq in range(2)])
    first_entry, second_taken = bench.at("line")[1], bench.at("taken")[1]
    assert second_taken == first_entry + 1 < bench.at("beat")[4]
    assert [line["addr"] for line in bench.lines()[1::2]] == [RING_PA >> 6] * 2
    assert bench.at("line")[2] > 60
    assert bench.log[-1]["full"] == 60 - second_taken + 3
    assert bench.log[-1]["delivered"] == 2 and bench.log[-1]["tail1"] == 2


def test_a_job_settles_on_its_own_lines_while_the_next_ones_are_announced():
    """Two one-word jobs back to back: the second's lines are announced before the first's
    entry's last word, and each job settles, its tail advancing and its completion offered, at
    the edge after its own entry's last word (the one its line is released at), not waiting for
    the other's lines."""
    bench = Bench()
    bench.run([(job(seq=seq), 1) for seq in range(2)])
    lines, beats = bench.at("line"), bench.at("beat")
    first_written, second_written = beats[4], beats[9]
    assert lines[3] < first_written
    assert bench.at("completion") == [first_written + 1, second_written + 1]
    assert [bench.log[edge]["entry"] for edge in bench.at("completion")] == [
        RING_VA, RING_VA + COMPLETION_BYTES]


def test_a_job_waits_for_room_in_the_settling_queue_beside_the_job_being_sent():
    """No line is released before edge 100: the settling queue fills with the records of the
    first SETTLING_JOBS jobs, the last of them counted while it is still being sent, and the
    next job waits for one to leave; then every job settles, in order."""
    bench = Bench(lines_from=100)
    bench.run([(job(seq=seq), 1) for seq in range(SETTLING_JOBS + 2)])
    assert sum(edge < 100 for edge in bench.at("line")) == 2 * SETTLING_JOBS
    assert [bench.log[edge]["entry"] for edge in bench.at("completion")] == [
        RING_VA + COMPLETION_BYTES * slot for slot in range(SETTLING_JOBS + 2)]
    assert bench.log[-1]["delivered"] == SETTLING_JOBS + 2 and bench.log[-1]["tail1"] == 6


def test_states_are_encoded_in_the_order_the_stall_report_names_them():
    assert fsm_states(MessageWriter(), "write") == STATES


@pytest.mark.parametrize("params, error", [
    (dict(endpoints=0), ValueError), (dict(endpoints=17), ValueError),
    (dict(endpoints=8.0), TypeError),
])
def test_parameter_errors_name_the_parameter(params, error):
    with pytest.raises(error, match="^endpoints must be "):
        MessageWriter(**params)


def test_parameters_are_kept():
    writer = MessageWriter(endpoints=3)
    assert writer.endpoints == 3 and len(writer.ring_tail) == 3 and len(writer.ring_head) == 3
    silence_unused(writer)


def test_a_ring_restarted_with_jobs_settling_gives_the_slots_after_theirs():
    """Two jobs settle; two more are written and held unsettled (no line released from edge 14
    to 90) when the NI restarts the ring at edge 50: the tail goes to 0, the two settle into
    slots 0 and 1 of the restarted ring, and a fifth job, offered after the restart, takes slot 2
    (not 0, which the third job's entry holds)."""
    bench = Bench(held=range(14, 90), reset_at=(50, 1))
    jobs = [(job(seq=seq), 1) for seq in range(4)] + [(job(seq=4), 1, 60)]
    bench.run(jobs)
    assert bench.at("taken")[3] < 50 < bench.at("taken")[4]
    assert [bench.log[edge]["entry"] for edge in bench.at("completion")] == [
        RING_VA + COMPLETION_BYTES * slot for slot in (0, 1, 2, 3, 2)]
    assert bench.log[-1]["tail1"] == 3



def test_a_ring_restarted_as_an_entry_settles_loses_that_advance_and_its_slot():
    """Jobs 2 and 3 are held unsettled (no line released from edge 14 to 51); the NI restarts
    the ring at edge 51, the cycle job 2 settles: its advance is lost with the old tail, so the
    restarted ring counts job 3 alone, and a fifth job, offered after the restart, takes slot 1,
    also when it is taken in the cycle after the restart (it waits for the counts of the new
    tail). A cycle earlier, both count (slot 2); a cycle later, job 2's advance has happened
    (slot 1)."""
    for reset_at, offered_at, slot, tail in ((50, 60, 2, 3), (51, 60, 1, 2), (52, 60, 1, 2),
                                             (51, 51, 1, 2), (51, 52, 1, 2)):
        bench = Bench(held=range(14, 51), reset_at=(reset_at, 1))
        bench.run([(job(seq=seq), 1) for seq in range(4)] + [(job(seq=4), 1, offered_at)])
        completions = bench.at("completion")
        assert completions[2] == 51 and bench.at("taken")[4] == offered_at + 1
        assert [bench.log[edge]["entry"] for edge in completions] == [
            RING_VA + COMPLETION_BYTES * slot for slot in (0, 1, 2, 3, slot)]
        assert bench.log[-1]["tail1"] == tail


def test_a_ring_restarted_counts_the_jobs_unsettled_whatever_their_number():
    """Three jobs, the second and third held unsettled (no line released from edge 10 to 50)
    when the NI restarts the ring at edge 30: the restarted ring counts those two (an odd number
    of jobs started before), and a fourth job, offered after the restart, takes slot 2."""
    bench = Bench(held=range(10, 50), reset_at=(30, 1))
    bench.run([(job(seq=seq), 1) for seq in range(3)] + [(job(seq=3), 1, 40)])
    completions = bench.at("completion")
    assert completions[0] < 10 < 50 <= completions[1]
    assert [bench.log[edge]["entry"] for edge in completions] == [
        RING_VA + COMPLETION_BYTES * slot for slot in (0, 1, 2, 2)]
    assert bench.log[-1]["tail1"] == 3


def test_a_job_held_for_its_ring_starts_on_its_own_check_not_on_the_job_before():
    """Job 0 fills endpoint 2's ring of 1 entry; job 1 goes to endpoint 1's ring, and job 2,
    to endpoint 2's, is held as its ring is full (the held job's check comes from a register,
    which in its first cycle held still holds the job before's): it waits until user code moves
    the head at edge 60, then goes into its own ring's slot 0."""
    bench = Bench(head_at=(60, 2, 1))
    bench.run([(job(endpoint=2, ring_log2=0, seq=0), 1), (job(endpoint=1, seq=1), 1),
               (job(endpoint=2, ring_log2=0, seq=2), 1)])
    taken, completions = bench.at("taken"), bench.at("completion")
    assert len(completions) == 3 and taken[2] < 30 < 60 < bench.at("line")[-1]
    assert [bench.log[edge]["entry"] for edge in completions] == [RING_VA] * 3
    assert bench.log[-1]["full"] > 25


def test_a_job_held_for_its_ring_takes_its_slot_in_the_ring_restarted_meanwhile():
    """A ring of 4 filled by jobs 0 to 3 (2 and 3 unsettled: no line released from edge 14 to
    60); job 4 is held until user code moves the head at edge 40, and the NI restarts the ring
    at edge 42, just as the held job's check sees the head: the job does not start on answers
    worked out before the restart, but takes slot 2 of the restarted ring, after jobs 2 and 3."""
    bench = Bench(head_at=(40, 1, 1), held=range(14, 60), reset_at=(42, 1))
    bench.run([(job(ring_log2=2, seq=seq), 1) for seq in range(5)])
    assert bench.at("line")[-2] > 44
    assert [bench.log[edge]["entry"] for edge in bench.at("completion")] == [
        RING_VA + COMPLETION_BYTES * slot for slot in (0, 1, 2, 3, 2)]
    assert bench.log[-1]["tail1"] == 3


def test_words_wait_for_their_line_to_be_announced():
    """The buffer takes announcements only at edges 10, 20 and 30: each line's words go out only
    after its announcement is taken (a payload line of 2 words, then the entry's line), and the
    job completes once both are."""
    bench = Bench(announce_at={10, 20, 30})
    bench.run([(job(words=2), 2)])
    lines, beats = bench.at("line"), bench.at("beat")
    assert lines == [10, 20]
    assert 10 < beats[0] and beats[1] < 20 < beats[2] and len(beats) == 6
    assert len(bench.at("completion")) == 1


def test_a_payload_over_a_page_boundary_is_announced_a_line_an_edge_each_named_ahead():
    """20 words from 0xfc8: the last line of page 0 (words 1-7, in frame 0x222), then page 1's
    first two lines (in frame 0x333: 8 words, 5 words), then the entry's line; taken one an edge
    as the buffer offers, each named on rx_next while the one before is offered (as every run
    checks), and the words in order."""
    bench = Bench()
    bench.run([(job(words=20, remote_va=0x1000_0fc8), 20), (job(words=1, seq=6), 1)])
    lines = bench.lines()
    assert [(line["addr"], line["words"]) for line in lines[:4]] == [
        ((0x222 << PAGE_BITS | 0xfc0) >> 6, 0b1111_1110),
        ((0x333 << PAGE_BITS) >> 6, 0b1111_1111),
        ((0x333 << PAGE_BITS | 0x040) >> 6, 0b0001_1111),
        (RING_PA >> 6, (1 << COMPLETION_BYTES // 8) - 1),
    ]
    edges_taken = bench.at("line")
    assert edges_taken[1:4] == [edges_taken[0] + 1, edges_taken[0] + 2, edges_taken[0] + 3]
    hinted = [edge for edge in range(edges_taken[0], edges_taken[3]) if bench.log[edge]["hint"]]
    assert hinted == edges_taken[:3]
    assert [beat["data"] for beat in bench.beats()[:20]] == [0x1111_0000 + i for i in range(20)]


class _Scans(Elaboratable):
    """Both of the writer's scans of one 16-bit value, for the test below."""

    def __init__(self):
        self.value = Signal(16)

    def elaborate(self, platform):
        m = Module()
        self.any_at_or_above = _scan(m, self.value, "or", "or")
        self.all_at_or_below = _scan(m, self.value, "and", "and")
        return m


def test_the_scans_of_the_ring_counts_agree_with_their_definitions(seed):
    """Bit k of the "or" scan: a bit of the value at k or above is set; of the "and" scan: every
    bit at k or below is. Every value of up to 8 bits, the edge cases of 16, and random ones of
    16 from the run's seed."""
    rng = random.Random(seed)
    values = [*range(1 << 8), *(rng.getrandbits(16) for _ in range(300)),
              *((1 << k) - 1 for k in range(17)), *(((1 << 16) - 1) ^ (1 << k) for k in range(16))]
    dut = _Scans()
    wrong = []

    async def check(ctx):
        for value in values:
            ctx.set(dut.value, value)
            for bit in range(16):
                above = (value >> bit) != 0
                below = (value | ~((1 << (bit + 1)) - 1)) & 0xffff == 0xffff
                got = (ctx.get(dut.any_at_or_above) >> bit & 1,
                       ctx.get(dut.all_at_or_below) >> bit & 1)
                if got != (above, below):
                    wrong.append((value, bit, got))

    sim = Simulator(dut)
    sim.add_testbench(check)
    sim.run()
    assert wrong == [], f"seed {seed}: (value, bit, (or, and)) wrong: {wrong[:4]}"
