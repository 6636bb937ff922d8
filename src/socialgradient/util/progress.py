"""Progress messages: the library logs (``logging``), the command line shows them.

Every module logs to its own logger (``log = logging.getLogger(__name__)``, under
``socialgradient``); each step of a fit that can take more than a few seconds (sampling,
the pointwise log-likelihood, the replicates, checks, figures, the netCDF write) logs one
INFO line with its elapsed time through :func:`step`. Nothing is shown unless the caller
configures logging: the ``socialgradient`` command does, with :func:`configure` (INFO to
stderr, or warnings only with ``--quiet``); in Python, ``logging.basicConfig(level="INFO")``
or ``socialgradient.util.progress.configure()``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

FORMAT = "%(asctime)s %(message)s"
_HANDLER_NAME = "socialgradient-cli"


class _Stderr(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a line is written.

    pytest and notebooks swap it.
    """

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextmanager
def step(log: logging.Logger, what: str, *args) -> Iterator[None]:
    """Log ``what % args`` with the seconds the ``with`` block took (at INFO, when it ends)."""
    start = time.perf_counter()
    yield
    if log.isEnabledFor(logging.INFO):
        log.info(f"{what}: %.1f s", *args, time.perf_counter() - start)


def configure(quiet: bool = False, stream=None) -> None:
    """Show the package's progress lines on ``stream`` (default: the current stderr).

    INFO, or WARNING and above when ``quiet``. Calling it again replaces its handler.
    """
    logger = logging.getLogger("socialgradient")
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
