"""The model, independent of any one spec.

The data every model reads (:mod:`~socialgradient.model.data`), the terms of the linear
predictor (:mod:`~socialgradient.model.terms`, one module each), the families (one class
each), parameterisation, the LA table of moderators, the LA outcome, the joint threshold
model's build, the forward simulation, and the PyMC builder
(:mod:`~socialgradient.model.build`).
"""

from socialgradient._moved import old_names

# socialgradient.model was a module: its old names still resolve, with a DeprecationWarning.
__getattr__ = old_names(__name__)
