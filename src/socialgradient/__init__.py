"""socialgradient: the social gradient in children's social care, in Bayesian multilevel models."""

from socialgradient import _moved

__version__ = "0.1.0"

_moved.install()  # old import paths (socialgradient.fit, ...) warn and point to the new ones
