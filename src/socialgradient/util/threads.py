"""One BLAS thread while a sampler's chains run on threads of their own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit the loaded BLAS libraries (OpenBLAS, MKL, BLIS) to one thread in this block.

    nutpie runs every chain on a thread of its own (``cores = chains``), each evaluating the
    model's log density, whose small matrix operations (the LA effects' triangular solves and
    products with the Cholesky factor of their covariance) call the BLAS that numpy and scipy
    bundle. By default that BLAS starts a thread per core for each call, so the chains' threads
    and BLAS's own compete for the cores and wait on each other: on the development machine
    (2 cores) one evaluation of the joint threshold model took 23.2 ms with OpenBLAS's default
    of 2 threads and 4.1 ms with 1, the same log density to the last digit
    (``bench/blas_threads.md``). Threads are set back to what they were when the block ends.
    A no-op where ``threadpoolctl`` finds no BLAS.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
