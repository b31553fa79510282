"""The Fabric reference model catches every broken promise it is meant to check."""

from behavioral.fabric import FabricModel
from behavioral.message import Message


def message(src, dst, seq, size=16):
    return Message(dst_node=dst, src_node=src, seq=seq, payload=bytes([src, seq]) * (size // 2),
                   metadata=src << 8 | seq).flits()


def test_in_order_delivery_is_clean():
    model = FabricModel(3)
    for seq in range(3):
        model.sent(0, message(0, 2, seq))
    model.sent(1, message(1, 9, 0))               # to a node that does not exist
    for seq in range(3):
        model.delivered(2, message(0, 2, seq))
    assert model.finish(dropped_count=1) == []


def test_out_of_order_duplicate_wrong_port_lost_and_miscounted():
    model = FabricModel(3)
    for seq in range(3):
        model.sent(0, message(0, 1, seq))
    model.delivered(1, message(0, 1, 1))          # overtook seq 0
    model.delivered(1, message(0, 1, 0))
    model.delivered(1, message(0, 1, 0))          # duplicate
    model.delivered(2, message(0, 1, 2))          # wrong output
    problems = model.finish(dropped_count=1)
    assert any("out of order" in p for p in problems)
    assert any("duplicate" in p for p in problems)
    assert any("message for node 1" in p for p in problems)
    assert any("never delivered" in p for p in problems)
    assert any("dropped counter is 1, expected 0" in p for p in problems)


def test_interleaved_flits_are_caught():
    model = FabricModel(2)
    a, b = message(0, 1, 0), message(1, 1, 0)
    model.sent(0, a)
    model.sent(1, b)
    mixed = a[:3] + b[3:4] + a[4:]
    model.delivered(1, mixed)
    assert any("malformed or interleaved" in p for p in model.mismatches)
