"""The facade's publishing function: an output set's release/ as a website and EES data."""

from __future__ import annotations


def publish(out_dir, site_dir, **kwargs) -> dict:
    """Publish an output set's ``release/`` as a static website and EES data files.

    Parameters
    ----------
    out_dir : path-like
        A verified output set (the folder :func:`socialgradient.api.write` wrote); never
        its ``internal/``.
    site_dir : path-like
        The site's folder (created, or replaced if a previous site is there).
    **kwargs
        ``year`` (reporting year of the EES files), ``boundaries`` (the ONS boundary file
        for the map): see :func:`socialgradient.release.publish.publish`.

    Returns
    -------
    dict
        The site's path, its number of pages, LAs and figures, and the EES screening results.

    Raises
    ------
    OutputSetError
        ``out_dir`` is not a verified output set.
    PublishError
        ``out_dir`` is an ``internal/`` or ``release/`` folder, ``site_dir`` is not ours to
        replace, or the EES files fail DfE's screening checks.
    DisclosureError
        The built site fails the release scans (nothing is written then).

    Examples
    --------
    >>> import socialgradient.api as sg
    >>> sg.publish("out", "site")  # doctest: +SKIP
    """
    from socialgradient.release.publish import publish as _publish

    return _publish(out_dir, site_dir, **kwargs)
