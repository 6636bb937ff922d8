"""The tolerant comparisons of tests/approx.py: a last-ulp difference passes, a real one fails
and is named by its path; rounding (what they replace) is shown to be no cure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from approx import assert_close, assert_frame_close, fingerprint


def ulps(x: float, k: int) -> float:
    """``x`` moved ``k`` floats up (k > 0) or down."""
    for _ in range(abs(k)):
        x = float(np.nextafter(x, math.inf if k > 0 else -math.inf))
    return x


TRUTH = {
    "seed": 2021,
    "name": "referrals",
    "rural": True,
    "missing": None,
    "thresholds": {
        "referrals": {
            "b_w": 0.4824261492442927,
            "la": {
                "E06000001": {"gradient": 1.8364598405870735, "m_c": -0.25},
                "E06000002": {"gradient": 1.4018930015043045, "m_c": 0.75},
            },
        }
    },
    "ranks": [0, 5, 9],
    "shares": [0.1, 0.2, 0.7],
}


def nudged(obj, k: int = 2):
    """Every float of ``obj`` moved ``k`` ulps: what another CPU's kernels may give."""
    if isinstance(obj, dict):
        return {key: nudged(v, k) for key, v in obj.items()}
    if isinstance(obj, list):
        return [nudged(v, k) for v in obj]
    return ulps(obj, k) if isinstance(obj, float) else obj


def test_last_ulp_differences_pass():
    assert_close(nudged(TRUTH, 2), TRUTH)
    assert_close(nudged(TRUTH, -2), TRUTH, rtol=1e-12)
    assert_close({"x": math.nan, "y": math.inf}, {"x": math.nan, "y": math.inf})


def test_real_differences_fail_and_name_the_path():
    changed = nudged(TRUTH, 0)
    changed["thresholds"]["referrals"]["la"]["E06000002"]["gradient"] *= 1 + 1e-6
    with pytest.raises(
        AssertionError,
        match=r"\$\.thresholds\.referrals\.la\.E06000002"
        r"\.gradient: 1\.40189",
    ):
        assert_close(changed, TRUTH)
    with pytest.raises(AssertionError, match=r"\$\.shares\[2\]"):
        assert_close({**TRUTH, "shares": [0.1, 0.2, 0.71]}, TRUTH)
    with pytest.raises(AssertionError, match=r"\$\.thresholds: keys missing \[\], unexpected"):
        assert_close({**TRUTH, "thresholds": {**TRUTH["thresholds"], "cp_plans": {}}}, TRUTH)
    with pytest.raises(AssertionError, match=r"\$\.ranks: length 2, expected 3"):
        assert_close({**TRUTH, "ranks": [0, 5]}, TRUTH)


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        (2022, 2021),  # ints exactly
        (2021.0, 2021),  # an int is not a float
        (1, True),  # nor a bool an int
        ("referral", "referrals"),
        (0.0, None),
        (math.nan, 1.0),
    ],
)
def test_everything_but_floats_is_exact(actual, expected):
    with pytest.raises(AssertionError, match=r"^\$"):
        assert_close(actual, expected, rtol=1.0, atol=1.0)


def test_rounding_to_12_digits_is_no_cure():
    """Two floats 2 ulps apart, either side of the halfway point between two 12-digit values
    (1.00000000000 and 1.00000000001): rounded to 12 significant digits they differ, within
    rtol they are equal."""
    boundary = 1.000000000005
    below, above = ulps(boundary, -1), ulps(boundary, 1)
    assert float(f"{below:.12g}") != float(f"{above:.12g}")
    assert_close(above, below)


def test_frames_floats_within_tolerance_the_rest_exact():
    expected = pd.DataFrame(
        {
            "la": ["E06000001", "E06000002"],
            "n_lsoa": [58, 86],
            "area_km2": [96.092887, 55.272065],
            "density": [962.58, 2520.44],
            "m_c": [0.7048812345678901, math.nan],
        }
    )
    other_cpu = expected.assign(
        m_c=[ulps(0.7048812345678901, 3), math.nan],
        area_km2=[96.092888, 55.272065],  # rounded the other way
        density=[962.59, 2520.44],
    )
    assert_frame_close(other_cpu, expected, atol={"area_km2": 1e-6, "density": 1e-2})
    with pytest.raises(AssertionError, match="column 'area_km2'"):
        assert_frame_close(other_cpu, expected, atol={"density": 1e-2})
    with pytest.raises(AssertionError, match="n_lsoa"):
        assert_frame_close(expected.assign(n_lsoa=[58, 87]), expected, rtol=1.0)
    with pytest.raises(AssertionError, match="la"):
        assert_frame_close(expected.assign(la=["E06000001", "E06000003"]), expected, rtol=1.0)
    with pytest.raises(AssertionError, match="not float columns"):
        assert_frame_close(expected, expected, atol={"n_lsoa": 1})
    with pytest.raises(AssertionError, match="columns"):
        assert_frame_close(expected[["n_lsoa", "la", "area_km2", "density", "m_c"]], expected)


def test_fingerprint_pins_everything_but_the_last_ulp():
    pinned = fingerprint(TRUTH)
    assert pinned["floats"] == 8
    assert_close(fingerprint(nudged(TRUTH, 3)), pinned, rtol=1e-12)
    reordered = {k: TRUTH[k] for k in reversed(list(TRUTH))}
    assert fingerprint(reordered) == pinned  # key order is not content
    renamed = {**TRUTH, "name": "cp_plans"}
    with pytest.raises(AssertionError, match=r"\$\.skeleton"):
        assert_close(fingerprint(renamed), pinned)
    swapped = nudged(TRUTH, 0)
    la = swapped["thresholds"]["referrals"]["la"]
    la["E06000001"]["gradient"], la["E06000002"]["gradient"] = (
        la["E06000002"]["gradient"],
        la["E06000001"]["gradient"],
    )
    with pytest.raises(AssertionError, match=r"\$\.weighted_abs_sum"):
        assert_close(fingerprint(swapped), pinned)
