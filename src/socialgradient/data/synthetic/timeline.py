"""Dates of an episode that real children's services could have recorded (CIN validation rules).

The CIN Census validation rules (issue 31; :mod:`socialgradient.data.census.rules`) reveal
behaviours the first simulator had and services do not: an initial child protection
conference (ICPC, the day a CP plan starts) on a weekend (rule 8875), a CP plan ending the day
it starts (8840), a CIN plan starting the day the CP plan starts, so open beside it (4016,
4001), a referral more than 40 weeks before birth (8606). These functions move the dates
deterministically (no random number is drawn, so every other value of the records stays as it
was); who reaches which threshold in which year never changes.

:func:`cp_dates`, for episodes with a CP plan, per episode:

1. the ICPC is wanted on the simulated plan start, but at least a day after the CIN plan
   started (the CIN plan ends the day the CP plan starts);
2. it is moved to the next weekday, or, where that is not before the episode's closure (or is
   after 31 March), to the last weekday before the closure (or on or before 31 March);
3. where that is before the second day of the collection year (a CP episode closed within a
   day or two of 1 April), it is the first weekday after 1 April and the closure moves to the
   day after it (kept open where that passes 31 March);
4. the CIN plan start, the assessment and the referral move back where they must, so that
   referral <= assessment <= CIN plan start < ICPC < closure.

:func:`referral_after_conception`: a date of birth no later than 280 days (40 weeks) after
the child's earliest referral of the year (pre-birth referrals are real; earlier ones are not).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

DAY = np.timedelta64(1, "D")
#: A referral may come at most this many days before the child's date of birth (rule 8606).
PREBIRTH_DAYS = 280


def weekday(d: np.ndarray, roll: Literal["forward", "backward"]) -> np.ndarray:
    """Return the date itself if a weekday, else the next or previous weekday.

    The next with ``roll="forward"``, the previous with ``roll="backward"``.
    """
    return np.busday_offset(np.asarray(d, "datetime64[D]"), 0, roll=roll)


def cp_dates(referral, assessment, cin_start, cp_want, closure, first, census) -> dict:
    """Dates of CP-plan episodes that obey the rules (module docstring); arrays of equal length.

    ``first``, ``census``: the collection year's first and last days (scalars or arrays).
    ``closure`` NaT: open at ``census``. Returns ``referral``, ``assessment``,
    ``cin_start``, ``cp_start``, ``closure`` (NaT: open) and ``moved`` (the referral moved)
    and ``extended`` (the closure moved), all ``datetime64[D]`` except the two masks.
    """
    ref, ass, cin, want, clo = (
        np.asarray(a, "datetime64[D]") for a in (referral, assessment, cin_start, cp_want, closure)
    )
    n = len(ref)
    first = np.broadcast_to(np.asarray(first, "datetime64[D]"), (n,))
    census = np.broadcast_to(np.asarray(census, "datetime64[D]"), (n,))
    closed = ~np.isnat(clo)
    hi = np.where(closed, clo - DAY, census)
    hi = np.minimum(hi, census)
    c = weekday(np.maximum(want, cin + DAY), "forward")
    late = c > hi
    c[late] = weekday(hi[late], "backward")
    early = c < first + DAY
    extended = early & closed
    c[early] = weekday(first[early] + DAY, "forward")
    new_clo = clo.copy()
    new_clo[extended] = np.maximum(clo[extended], c[extended] + DAY)
    new_clo[extended & (new_clo > census)] = np.datetime64("NaT", "D")
    cin2 = np.minimum(cin, c - DAY)
    ass2 = np.minimum(ass, cin2)
    ref2 = np.minimum(ref, ass2)
    return {
        "referral": ref2,
        "assessment": ass2,
        "cin_start": cin2,
        "cp_start": c,
        "closure": new_clo,
        "moved": ref2 != ref,
        "extended": extended,
    }


def referral_after_conception(dob, earliest_referral) -> np.ndarray:
    """Date of birth moved back to ``earliest_referral + 280 days`` where it was later."""
    dob = np.asarray(dob, "datetime64[D]")
    r = np.asarray(earliest_referral, "datetime64[D]")
    limit = r + np.timedelta64(PREBIRTH_DAYS, "D")
    return np.where(~np.isnat(r) & (dob > limit), limit, dob)
