"""The workload's message statuses (:data:`behavioral.workload.MessageStatus`)."""

import json

from behavioral.workload import MessageStatus, settled_without_entry
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
