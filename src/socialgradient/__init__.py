"""socialgradient: the social gradient in children's social care, in Bayesian multilevel models."""

__version__ = "0.1.0"
