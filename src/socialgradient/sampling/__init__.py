"""Sampling a built model and drawing from its posterior.

:mod:`~socialgradient.sampling.fit` (nutpie, PyMC or NumPyro), the compiled-model cache
(:mod:`~socialgradient.sampling.compiled`), the private nutpie fast path
(:mod:`~socialgradient.sampling._nutpie`) and posterior draws
(:mod:`~socialgradient.sampling.predict`).
"""
