"""The formal proofs hold, and each fails on its broken variants (tb/formal.py lists them).

Each entry of :data:`tb.formal.PROOFS` runs at its ``quick_depth``: the unbounded proofs in
full, the bounded ones shallower than ``make formal`` runs them.
"""

import pytest

from tb.formal import PROOFS


@pytest.mark.parametrize("proof", [proof for proof in PROOFS if proof.quick_depth is not None],
                         ids=lambda proof: proof.name)
def test_proof(proof, tmp_path):
    result = proof.run(quick=True, workdir=tmp_path / proof.name)
    as_expected, verdict = proof.judge(result)
    assert as_expected, f"{proof.name}: {verdict}\n" + result.log.read_text()[-3000:]
    if proof.mode == "prove" and not proof.fails_in:
        assert "successful proof by k-induction" in result.log.read_text()
