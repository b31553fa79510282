"""The NI TLB's properties are proven (k-induction), and the proof fails on a broken TLB."""

from tb.formal import NoASIDCompare, prove
from rtl.tlb import NITLB


def test_nitlb_properties_are_proven(tmp_path):
    proved, _, log = prove(NITLB, workdir=tmp_path / "tlb")
    text = log.read_text()
    assert proved, text[-3000:]
    assert "successful proof by k-induction" in text


def test_proof_fails_when_the_asid_is_not_compared(tmp_path):
    proved, _, log = prove(NoASIDCompare, workdir=tmp_path / "broken")
    text = log.read_text()
    assert not proved
    assert "Assert failed" in text, text[-3000:]     # a counterexample, not a tool failure
