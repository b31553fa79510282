"""The workload's message statuses (:data:`behavioral.workload.MessageStatus`) and its compute
threads' rates."""

import json

from behavioral.workload import MessageStatus, compute_misses, compute_rate, settled_without_entry
from rtl.layouts import CompletionStatus, MmioStatus, NiFaultKind, TxError


def test_every_outcome_has_a_status_named_as_the_records_spell_it():
    for error in (*TxError, *MmioStatus):
        if error not in (TxError.NONE, MmioStatus.OK):
            assert MessageStatus[f"REFUSED_{error.name}"] == f"refused_{error.name.lower()}"
    for kind in NiFaultKind:
        assert MessageStatus[f"DISCARDED_{kind.name}"] == f"discarded_{kind.name.lower()}"
    for status in CompletionStatus:
        assert MessageStatus[status.name] == status.name.lower()
    assert json.dumps({MessageStatus.SENT: [MessageStatus.PLANNED]}) == '{"sent": ["planned"]}'


def test_only_refused_and_discarded_messages_settle_without_an_entry():
    without = {status for status in MessageStatus if settled_without_entry(status)}
    assert without == {status for status in MessageStatus
                       if status.value.startswith(("refused_", "discarded_"))}
    assert not {MessageStatus.PLANNED, MessageStatus.SENT, MessageStatus.DELIVERED,
                MessageStatus.REJECTED} & without


def test_a_compute_threads_rate_counts_its_turns_inside_the_stretch():
    # turns of 10 instructions ending every 5 cycles from cycle 100: 2 per cycle
    turns = list(range(100, 200, 5))
    assert compute_rate(10, turns, 0, 1000) == 2.0
    # only the turns that end inside count, from the first such end to the last
    assert compute_rate(10, [100, 110, 150, 155, 300], 105, 200) == 10 * 2 / 45
    assert compute_rate(10, turns, 101, 104) is None
    assert compute_rate(10, [], 0, 10) is None


def test_a_compute_threads_misses_count_over_the_same_turns_per_kilo_instruction():
    turns, misses = [100, 110, 150, 155, 300], [1, 3, 3, 7, 20]
    # turns ending at 110, 150 and 155: 2 turns of 10 instructions, 4 misses between
    assert compute_misses(10, turns, misses, 105, 200) == 1000 * 4 / 20
    assert compute_misses(10, turns, misses, 101, 104) is None

