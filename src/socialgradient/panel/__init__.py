"""The between-LA panel model on the published DfE tables, and its data."""
