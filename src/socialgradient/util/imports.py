"""Keeping modules a job never uses out of its process."""

from __future__ import annotations

import importlib.util
import sys


def forget_unloaded_jax() -> None:
    """Drop a lazily registered, never used ``jax`` from ``sys.modules``.

    arviz_base registers jax lazily when it is imported. Code that asks whether an array is
    a jax array, as matplotlib does of every plotted array and scipy's array-API helpers of
    every ``logsumexp`` argument (power-scaling's PSIS), then finds ``sys.modules["jax"]``
    and imports all of jax (~1 s) into a process that never uses it. A lazy module not yet
    loaded is removed (whoever registered it still holds it and loads it on first use); a
    real jax is left alone. Idempotent and cheap: called where such code starts.
    """
    module = sys.modules.get("jax")
    lazy = getattr(importlib.util, "_LazyModule", None)
    if module is not None and lazy is not None and type(module) is lazy:
        del sys.modules["jax"]
