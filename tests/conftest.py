"""Shared pytest set-up.

Property tests explore new examples on a developer's machine; under CI (``CI`` set) they run
derandomized, so a landing is decided by the code, not by which examples were drawn.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
