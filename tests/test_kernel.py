"""The behavioural kernel interrupt path (behavioral/kernel.py): its cost comes from the node's
caches, and at the paper's Ultra-1 with user code filling the L2 it is the paper's."""

import pytest

from behavioral.kernel import KERNEL_DATA, KERNEL_TEXT, STEPS, ULTRA1, InterruptPath

ULTRA1_L2_LINES = ULTRA1["hierarchy"]["l2_bytes"] // 64


def ultra1(fraction, seed=1):
    return InterruptPath(**ULTRA1, working_set_lines=round(fraction * ULTRA1_L2_LINES), seed=seed)


def test_the_paths_footprint_is_the_papers_misses():
    assert sum(step.code_lines for step in STEPS) == 210
    assert sum(step.data_lines for step in STEPS) == 170


def test_at_the_ultra1_with_the_l2_full_of_user_lines_it_is_the_papers_interrupt(seed):
    """17,500 cycles within 10 %, 87 % of them misses (80 to 95 %), every line of the path an L2
    miss, and the user's next turn refills what the path evicted (up to 380 misses)."""
    done = ultra1(1.0, seed).measure()
    assert abs(done.cycles - 17_500) <= 1_750, (seed, done.cycles)
    assert 0.80 <= done.miss_share <= 0.95, (seed, done.miss_share)
    assert done.l2_misses == 380 and 0 < done.refill_misses <= 380, (seed, done)
    assert done.cycles == sum(row["cycles"] for row in done.steps)
    assert done.l2_misses == sum(row["l2_misses"] for row in done.steps)


def test_the_misses_fall_with_the_user_working_set(seed):
    """The misses come from the cache model: a smaller working set leaves more of the path's
    lines in the L2; none at all, and the path costs a fraction of the full case."""
    runs = [ultra1(fraction, seed).measure() for fraction in (0.0, 0.25, 0.5, 0.75, 1.0)]
    misses = [done.l2_misses for done in runs]
    assert misses == sorted(misses) and misses[0] == 0 < misses[1], (seed, misses)
    assert runs[0].cycles * 3 < runs[-1].cycles, (seed, runs[0].cycles, runs[-1].cycles)


def test_the_paths_lines_are_in_the_l2_after_it_and_the_users_lines_evicted(seed):
    path = ultra1(1.0, seed)
    path.user_turn()
    path.interrupt()
    l2 = path.hierarchy.l2
    for first, count in ((KERNEL_TEXT, 210), (KERNEL_DATA, 170)):
        assert all(line in l2 for line in range(first, first + count))
    # (direct-mapped: each kernel line took the one user line of its set)
    assert sum(line not in l2 for line in path.working_set) == 380


def test_a_bad_working_set_is_refused():
    with pytest.raises(ValueError, match="working_set_lines -1 must be a non-negative integer"):
        InterruptPath(**ULTRA1, working_set_lines=-1)
