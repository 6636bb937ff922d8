"""The model, independent of any one spec.

The data every model reads (:mod:`~socialgradient.model.data`), families, parameterisation,
moderators, the LA outcome, the joint threshold model's build, the forward simulation, and
the PyMC builder (:mod:`~socialgradient.model.build`).
"""
