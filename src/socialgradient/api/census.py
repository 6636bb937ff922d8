"""CIN Census XML returns: write synthetic ones, read and validate real ones (part of the facade).

Re-exported by :mod:`socialgradient.api` (``sg.write_returns``, ``sg.read_returns``); the
work is :mod:`socialgradient.data.census`.
"""

from __future__ import annotations

from pathlib import Path


def write_returns(records, out_dir: str | Path, **kwargs) -> list[Path]:
    """Write one CIN Census XML return per LA and year from child records.

    Plus the linkage files beside them:
    :func:`socialgradient.data.census.returns.write_returns`.

    Parameters
    ----------
    records : Records
        Child records, e.g. from :func:`socialgradient.api.simulate_records`.
    out_dir : str or Path
        The folder to write to.
    **kwargs
        ``lea_codes`` (ONS code -> DfE LA number) and ``seed`` (of the ethnicity
        sub-codes), as :func:`socialgradient.data.census.returns.write_returns` takes them.

    Returns
    -------
    list of Path
        The XML returns written, sorted.

    Raises
    ------
    InputError
        An LA without a DfE number, a collection year the writer does not know, or a
        child ID the year's rules refuse.
    """
    from socialgradient.data.census import returns

    return returns.write_returns(records, out_dir, **kwargs)


def read_returns(*args, **kwargs):
    """Read, validate and link CIN Census XML returns.

    Parameters
    ----------
    *args, **kwargs
        As :func:`socialgradient.data.census.returns.read_returns` takes them: the returns
        (files or folders), the child -> LSOA table, the LSOA geography, and optionally
        the population, looked-after and CIN-plan tables, LA codes, ``errors``
        (``"raise"`` or ``"report"``), ``schema_dir`` and ``validate``.

    Returns
    -------
    records : Records
        The children, episodes and factors read, for :func:`socialgradient.api.aggregate`.
    report : ReadReport
        What was read, excluded and validated.

    Raises
    ------
    ValueError
        ``errors`` other than ``"raise"`` or ``"report"``.
    InputError
        A record problem, with ``errors="raise"``.
    """
    from socialgradient.data.census import returns

    return returns.read_returns(*args, **kwargs)
