"""Shared utilities below every layer.

Atomic file writes and file hashes (:mod:`~socialgradient.util.files`), output sets written
whole or not at all (:mod:`~socialgradient.util.outputs`: the data commands write them as the
release does; its private modules ``_outputs_manifest``, ``_outputs_owner``,
``_outputs_paths`` and ``_outputs_verify`` hold the set's manifest, what is ours, the
command's paths and the checks), and progress logging (:mod:`~socialgradient.util.progress`).
"""
