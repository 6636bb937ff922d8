"""socialgradient: the social gradient in children's social care, with Bayesian multilevel models."""

__version__ = "0.1.0"
