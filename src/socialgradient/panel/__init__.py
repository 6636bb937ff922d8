"""The between-LA panel model on the published DfE tables, and its data."""

from socialgradient._moved import old_names

# socialgradient.panel was a module: its old names still resolve, with a DeprecationWarning.
__getattr__ = old_names(__name__)
