"""The joint model's sampler options: nutpie's tree depth capped (``NUTPIE_MAXDEPTH``)."""

from __future__ import annotations

import pytest

import socialgradient.api as sg
from socialgradient.sampling import fit as fit_module
from socialgradient.sampling import joint as joint_fit
from socialgradient.spec import Spec


class Sampled(Exception):
    """Raised by the stand-in sampler once it has seen its options."""


@pytest.mark.parametrize(("sampler", "capped"), [("nutpie", True), ("pymc", False)])
def test_the_joint_fit_caps_nutpies_tree_depth(monkeypatch, sampler, capped):
    t = sg.default_data()
    table = t[t["la"].isin(t["la"].unique()[:4])].reset_index(drop=True)
    spec = Spec("referrals", outcomes=("referrals", "assessments")).replace(sampler=sampler)
    seen: dict = {}

    def stand_in(model, s, progressbar=True, **nuts):
        seen.update(nuts)
        raise Sampled

    monkeypatch.setattr(fit_module, "sample", stand_in)
    with pytest.raises(Sampled):
        joint_fit.fit(sg.encode(table, spec), spec, progressbar=False)
    assert seen["target_accept"] == spec.target_accept
    assert seen.get("maxdepth") == (joint_fit.NUTPIE_MAXDEPTH if capped else None)
