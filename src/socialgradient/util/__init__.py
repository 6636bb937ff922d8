"""Shared utilities below every layer.

Atomic file writes and file hashes (:mod:`~socialgradient.util.files`), output sets written
whole or not at all (:mod:`~socialgradient.util.outputs`: the data commands write them as the
release does), and progress logging (:mod:`~socialgradient.util.progress`).
"""
