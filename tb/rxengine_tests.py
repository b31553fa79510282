"""cocotb test of the RX engine alone with damaged links (run it with ``smtni sim rxengine``).

The system testbench cannot damage a flit on the Fabric; this test puts corrupted, truncated and
overlong messages, mixed with good ones, straight onto the RX engine's link port on both
simulators, with an NI TLB that grants every page, and scores each against the reference NI:
the faults reported, the words written through the MessageBuffer port (none for a bad message),
the completion entries and the notifications.
"""

import random

import cocotb

from behavioral.message import Message, flit_value
from behavioral.refni import ReferenceNI, RxResult
from rtl.layouts import (COMPLETION_BYTES, FLIT_BYTES, LINE_BYTES, PAGE_BITS, Completion,
                         EndpointEntry, NiFault, NiOsOp, RxFillBeat, RxLineRequest, TlbOp,
                         TlbResponse, TlbStatus, codec, tlb_lookup_layout)

from .component_tb import ComponentTB, knobs, seed_for
from .runner import record_result

LOOKUP, RESPONSE = codec(tlb_lookup_layout()), codec(TlbResponse)
ASID, KEY, WINDOW_VA, FRAME = 3, 0x1234, 0x1000_0000, 0x200
RING = {"enabled": 1, "asid": ASID, "thread": 5, "ring_log2": 8, "ring_pa": 0x0010_0000,
        "ring_va": 0x7000_0000_0000}


def _damaged(rng, message):
    """Return ``(flits, what)``: ``message``'s flits, whole or damaged one way."""
    flits = message.flits()
    what = rng.choice(["good", "good", "crc", "truncated", "overlong"])
    if what == "crc":
        index = rng.randrange(len(flits))
        data, last = flits[index]
        flits[index] = (data ^ (1 << rng.randrange(64)), last)
    elif what == "truncated" and len(flits) > 2:
        del flits[rng.randrange(len(flits) - 1)]
    elif what == "overlong":
        flits.insert(len(flits) - 1, (rng.getrandbits(64), False))
    else:
        what = "good"
    return flits, what


@cocotb.test()
async def damaged_links(dut):
    """Corrupted flits, dropped flits and extra flits between good messages: every bad one
    discarded with its fault and no memory written; every good one written and completed."""
    options = knobs("rxengine")
    tb = ComponentTB(dut, seed=seed_for("damaged_links"))
    node = tb.params["node"]
    ref = ReferenceNI(node, nodes=16, endpoints=tb.params["endpoints"])
    ref.os_command(op=NiOsOp.WRITE_ENDPOINT, index=0, endpoint=RING)
    # The endpoint table and ring heads (inputs held by the NI): endpoint 0 open, the rest not.
    dut.ring_reset.value = 0
    for index in range(tb.params["endpoints"]):
        entry = codec(EndpointEntry).pack(**RING) if index == 0 else 0
        getattr(dut, f"endpoints__{index}").value = entry
        getattr(dut, f"ring_head__{index}").value = 0
    for page in range(4):
        ref.os_command(op=NiOsOp.TLB, tlb={
            "op": TlbOp.FILL, "asid": ASID, "vpn": (WINDOW_VA >> PAGE_BITS) + page,
            "ppn": FRAME + page, "perm": {"local_read": 1, "remote_write": 1}, "key": KEY})
    expected_faults, expected_words, expected_completions = [], {}, []
    got = {"faults": [], "words": {}, "completions": []}
    announced = []
    # The MessageBuffer's side of lines_done: each line released in the cycle after its last
    # word, one a cycle.
    release = {"waiting": 0, "driving": False}

    def lookup(payload, now):
        request = LOOKUP.unpack(payload)
        page = (request["va"] >> PAGE_BITS) - (WINDOW_VA >> PAGE_BITS)
        # A damaged header may name any page: the engine looks up before it checks the CRC,
        # and acts on the answer only for a good message, which lands in the window.
        if 0 <= page < 4 and request["asid"] == ASID:
            tlb_response.send([RESPONSE.pack(status=TlbStatus.HIT, ppn=FRAME + page)])
        else:
            tlb_response.send([RESPONSE.pack(status=TlbStatus.MISS)])

    def line(payload, now):
        announced.append(codec(RxLineRequest).unpack(payload)["addr"])

    def beat(payload, now):
        fields = codec(RxFillBeat).unpack(payload)
        got["words"][announced[0] * LINE_BYTES + fields["word"] * FLIT_BYTES] = fields["data"]
        if fields["last"]:
            announced.pop(0)
            release["waiting"] += 1

    def release_lines(cycle):
        release["driving"] = release["waiting"] > 0
        dut.lines_done.value = int(release["driving"])
        release["waiting"] -= release["driving"]

    ports = tb.ports
    link = ports.source(dut, "flits")
    tlb_response = ports.source(dut, "tlb_response")
    ports.sink(dut, "tlb_request", on_receive=lookup)
    ports.sink(dut, "rx_line", on_receive=line)
    ports.sink(dut, "rx_data", on_receive=beat)
    ports.sink(dut, "fault",
               on_receive=lambda p, now: got["faults"].append(codec(NiFault).unpack(p)))
    ports.sink(dut, "completion",
               on_receive=lambda p, now: got["completions"].append(codec(Completion).unpack(p)))
    ports.source(dut, "miss_answer")
    ports.after_edge(release_lines, busy=lambda: release["waiting"] > 0 or release["driving"])
    dut.lines_done.value = 0
    await tb.start()
    rng = random.Random(tb.rng.random())
    kinds = {}
    for number in range(options["messages"]):
        size = FLIT_BYTES * rng.randrange(0, 40)
        message = Message(dst_node=node, src_node=rng.randrange(16), notify=True,
                          key=KEY, seq=number, metadata=number,
                          remote_va=WINDOW_VA + FLIT_BYTES * rng.randrange(512),
                          payload=bytes(rng.getrandbits(8) for _ in range(size)))
        flits, what = _damaged(rng, message)
        kinds[what] = kinds.get(what, 0) + 1
        outcome = ref.receive(flits)
        assert outcome.result is not RxResult.HELD
        if outcome.result is RxResult.DISCARDED:
            expected_faults.append(outcome.fault)
        else:
            expected_words.update(outcome.writes)
            expected_completions.append(outcome.completion)
        link.send([flit_value(data, last) for data, last in flits])
    await tb.wait_until(lambda: len(got["completions"]) >= len(expected_completions)
                        and len(got["faults"]) >= len(expected_faults),
                        100 * options["messages"] * 40, lambda: f"{got['faults']}")
    faults = [fault["kind"] for fault in got["faults"]]
    written = {pa: value for pa, value in got["words"].items()
               if not RING["ring_pa"] <= pa < RING["ring_pa"] + COMPLETION_BYTES * 256}
    assert faults == expected_faults, (faults, expected_faults)
    assert written == expected_words, "words written differ from the model's"
    assert got["completions"] == expected_completions
    record_result("damaged_links", {**tb.speed(), "kinds": kinds, "faults": len(faults),
                                    "completions": len(expected_completions),
                                    "words": len(written), "mismatches": 0})
