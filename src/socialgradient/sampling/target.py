"""Sample until the diagnostics reach a target, checked between blocks of draws.

A fixed number of draws is either wasteful (an easy posterior reaches a bulk ESS of 400 in a
few hundred draws) or too few (a sparse table's variance parameters need more). Here nutpie
runs in the background with a draw budget; every ``block`` draws per chain the reported
quantities can be checked (R-hat, bulk and tail ESS, :class:`Target`) on the first
``j * block`` draws of every chain, and sampling stops at the first check that passes. A
check that fails predicts the draws the target needs (ESS grows in proportion to the draws,
R-hat's excess over 1 shrinks in inverse proportion) and the next check is at the first block
beyond that prediction (:func:`next_check`), not at every block: on England's table a check
(the diagnostics of some 300 quantities, :mod:`socialgradient.sampling.convergence`) takes
the cores the chains run on. Each chain's draws depend only on
the seed and the chain (not on how fast the threads ran), and the decisions only on those
draws, so the result is the same for the same seed however the machine is loaded:
reproducible. Only the time budget (``max_seconds``) depends on the clock; its verdict says so.

A third budget is memory (:mod:`socialgradient.sampling.trace_memory`): where the draw
budget's trace would not fit, it is lowered to what does, and a fit that stops there says
"the memory budget ran out".

All chains run at once (``cores = chains``), so that every chain reaches each block at about
the same time on a machine with fewer cores than chains. The trace is read (a copy) only when
nutpie's progress says every chain has the next check's draws.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from socialgradient.sampling import convergence, trace_memory
from socialgradient.sampling._nutpie_trace import snapshot
from socialgradient.spec import Sampling
from socialgradient.util.memory import release_memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """When to stop sampling: the convergence target, the check's block and the budgets.

    Parameters
    ----------
    rhat : float
        The largest rank-normalised split R-hat allowed (1.01, Vehtari et al. 2021).
    ess_bulk, ess_tail : float
        The smallest bulk and tail effective sample sizes allowed (400 each).
    block : int
        Draws per chain between two checks.
    min_draws : int
        Draws per chain before the first check.
    max_draws : int
        The draw budget per chain: sampling stops there, target reached or not.
    max_seconds : float or None
        A wall-clock budget for sampling (not reproducible: it depends on the machine).
    """

    rhat: float = 1.01
    ess_bulk: float = 400.0
    ess_tail: float = 400.0
    block: int = 100
    min_draws: int = 200
    max_draws: int = 4000
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        """Refuse settings that cannot define a stopping rule."""
        if not self.rhat > 1.0:
            raise ValueError(f"target rhat must be above 1, not {self.rhat}")
        if self.ess_bulk <= 0 or self.ess_tail <= 0:
            raise ValueError("target ESS must be positive")
        if self.block < 1 or self.min_draws < 1 or self.max_draws < self.min_draws:
            raise ValueError(
                f"need block >= 1 and 1 <= min_draws <= max_draws, got block={self.block}, "
                f"min_draws={self.min_draws}, max_draws={self.max_draws}"
            )
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be positive (or None)")

    @classmethod
    def of(cls, s: Sampling) -> Target:
        """Return the target of a spec's sampling settings (``rhat``, ``ess``, the budgets)."""
        return cls(
            rhat=s.rhat,
            ess_bulk=s.ess,
            ess_tail=s.ess,
            min_draws=min(cls.min_draws, s.max_draws),
            max_draws=s.max_draws,
            max_seconds=s.max_seconds,
        )

    def checkpoints(self) -> list[int]:
        """Return the draw counts per chain at which the diagnostics are checked, in order."""
        first = -(-self.min_draws // self.block) * self.block
        points = list(range(first, self.max_draws + 1, self.block))
        if not points or points[-1] != self.max_draws:
            points.append(self.max_draws)
        return points


@dataclass
class Verdict:
    """What the sampling reached: draws kept, why it stopped, and what was not met."""

    draws: int
    stopped_by: str  # "target", "draw budget", "memory budget" or "time budget"
    reached: bool
    checks: int
    seconds: float
    worst: dict[str, float]
    unmet: dict[str, list[str]] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    checked: list[int] = field(default_factory=list)  # draws per chain at each check
    memory_draws: int | None = None  # the memory budget, where it was below the draw budget

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready values."""
        return asdict(self)

    def line(self) -> str:
        """Return the verdict in one line: the draws kept, and what was not reached.

        The log's line, and the diagnostics' reason when a budget ran out
        (:func:`socialgradient.results.checks.diagnose`).
        """
        if self.reached:
            return f"target reached at {self.draws} draws per chain ({self.checks} checks)"
        unmet = "; ".join(
            f"{k} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
            for k, names in self.unmet.items()
        )
        draws = f"{self.draws} draws per chain"
        return f"the {self.stopped_by} ran out at {draws}; not reached: {unmet}"


def diagnose(posterior: xr.Dataset, target: Target) -> tuple[dict[str, float], dict[str, list]]:
    """Return the worst R-hat, bulk and tail ESS of ``posterior`` and what misses ``target``.

    The diagnostics are arviz_stats' ``rhat`` (method "rank"), ``ess`` (methods "bulk" and
    "tail") as vectorised in :mod:`socialgradient.sampling.convergence` (the same values to a
    relative 1e-10, in a fraction of the time), the tail ESS at the 5% and 95% quantiles
    (``convergence.TAIL_PROB``). ``unmet`` maps each criterion to the
    variables (with their element labels where a variable has several) that miss it.

    A quantity constant over every draw of every chain (a stratified model's reference
    level, fixed at 0) has no R-hat (NaN, as in ArviZ) and cannot show a lack of convergence:
    it counts as meeting the R-hat target (read as 1), so that it does not keep the sampler
    running to its budget. A NaN among varying draws is still unmet.
    """
    rhat, bulk, tail = convergence.diagnostics(posterior, prob=convergence.TAIL_PROB)
    # skipna=False: xarray's NaN-skipping max copies every variable (a NaN draw is unmet anyway)
    constant = posterior.max(("chain", "draw"), skipna=False) == posterior.min(
        ("chain", "draw"), skipna=False
    )
    rhat = rhat.where(~constant, 1.0)
    worst = {
        "rhat": extreme(rhat, max),
        "ess_bulk": extreme(bulk, min),
        "ess_tail": extreme(tail, min),
    }
    unmet = {
        "rhat": _failing(rhat, lambda v: ~(v <= target.rhat)),
        "ess_bulk": _failing(bulk, lambda v: ~(v >= target.ess_bulk)),
        "ess_tail": _failing(tail, lambda v: ~(v >= target.ess_tail)),
    }
    return worst, {k: v for k, v in unmet.items() if v}


def extreme(ds: xr.Dataset, pick) -> float:
    """Return the max or min over every value of ``ds``; NaN if any is NaN (not computable).

    ``pick`` is ``max`` or ``min``. The convergence verdict
    (:func:`socialgradient.results.checks.diagnose`) reads its worst values with it too.
    """
    values = [np.asarray(ds[v].values, dtype=float).ravel() for v in ds.data_vars]
    flat = np.concatenate(values) if values else np.array([np.nan])
    if np.isnan(flat).any():
        return float("nan")
    return float(np.max(flat) if pick is max else np.min(flat))


def _failing(ds: xr.Dataset, bad) -> list[str]:
    out = []
    for name in ds.data_vars:
        mask = np.ravel(bad(ds[name].values))
        if ds[name].ndim == 0:
            out += [str(name)] if mask.any() else []
        else:
            out += [f"{name}[{i}]" for i in np.flatnonzero(mask)]
    return out


def next_check(points: list[int], k: int, worst: dict[str, float], target: Target) -> int:
    """Return the index in ``points`` of the check after a failed one at ``points[k]``.

    The first checkpoint at or beyond the draws predicted to reach the target from ``worst``
    at ``points[k]`` draws per chain (ESS in proportion to the draws, R-hat's excess over 1
    in inverse proportion), at most twice the draws (the prediction is rough: on England's
    table the largest R-hat of 300 LA effects is 1.035 at 200 draws, 1.015 at 400, 1.0105 at
    600 and 1.0100 at 700), at least the next checkpoint. A function of the draws alone, so
    the stopping point stays reproducible.
    """
    ratios = [
        target.ess_bulk / worst["ess_bulk"] if worst["ess_bulk"] > 0 else np.inf,
        target.ess_tail / worst["ess_tail"] if worst["ess_tail"] > 0 else np.inf,
        (worst["rhat"] - 1) / (target.rhat - 1),
    ]
    factor = min(2.0, max((r for r in ratios if not np.isnan(r)), default=2.0))
    later = [i for i in range(k + 1, len(points)) if points[i] >= factor * points[k]]
    return later[0] if later else len(points) - 1 if k + 1 < len(points) else k + 1


def _finished(sampler) -> bool:
    """Whether nutpie's background sampler has finished (its check raises while it runs)."""
    try:
        return bool(sampler.is_finished)
    except TimeoutError:
        return False


def _complete(posterior: xr.Dataset, names: list[str]) -> int:
    """Return the draws per chain that every chain has finished (NaN pads the rest)."""
    if posterior.sizes.get("draw", 0) == 0:
        return 0
    first = posterior[names[0]]
    finite = np.isfinite(first.values.reshape(first.sizes["chain"], first.sizes["draw"], -1))
    done = finite.all(axis=2)
    counts = np.where(done.all(axis=1), done.shape[1], np.argmin(done, axis=1))
    return int(counts.min())


def truncate(tree: xr.DataTree, draws: int) -> xr.DataTree:
    """Return ``tree`` with the first ``draws`` draws of every chain in its draw-indexed groups."""
    groups = {}
    for path, node in tree.subtree_with_keys:
        ds = node.to_dataset()
        if "draw" in ds.dims:
            ds = ds.isel(draw=slice(0, draws))
        groups["/" if path == "." else "/" + path] = ds
    out = xr.DataTree.from_dict(groups)
    out.attrs = dict(tree.attrs)
    return out


def sample(
    compiled: Any,
    target: Target,
    *,
    chains: int,
    tune: int,
    seed: int,
    names: list[str] | None = None,
    progress_bar: bool = False,
    poll: float = 0.25,
    **nuts: Any,
) -> tuple[xr.DataTree, Verdict]:
    """Sample ``compiled`` (a nutpie compiled model) until ``target`` is reached.

    Parameters
    ----------
    compiled : nutpie.CompiledModel
        The model to sample.
    target : Target
        The convergence target, the check's block and the budgets.
    chains, tune, seed : int
        As for :func:`nutpie.sample` (``tune`` draws per chain of warm-up, not kept).
    names : list of str, optional
        The posterior variables whose diagnostics decide (default: every variable).
    progress_bar : bool
        Show nutpie's progress bar.
    poll : float
        Seconds between looks at the running sampler.
    **nuts
        Further options of :func:`nutpie.sample` (e.g. ``target_accept``).

    Returns
    -------
    tree : xarray.DataTree
        The first ``verdict.draws`` draws of every chain (posterior and sample_stats).
    verdict : Verdict
        Draws kept, why sampling stopped, the worst diagnostics and what missed the target.
    """
    import nutpie

    start = time.perf_counter()
    progress = [0]  # draws per chain that every chain has finished, past tuning

    def note(chains_progress) -> None:
        progress[0] = min(c.finished_draws for c in chains_progress) - tune

    points = target.checkpoints()
    budget = trace_memory.budget(compiled, chains, tune, target.min_draws, target.max_draws)
    lowered = budget < target.max_draws  # by the memory budget
    if lowered:
        points = [p for p in points if p < budget] + [budget]
    sampler = nutpie.sample(
        compiled,
        draws=budget,
        tune=tune,
        chains=chains,
        cores=chains,
        seed=seed,
        save_warmup=False,
        progress_bar=progress_bar,
        progress_callback=note,
        progress_rate=200,
        blocking=False,
        **nuts,
    )
    checked: list[int] = []
    k = 0
    worst: dict[str, float] = {}
    unmet: dict[str, list[str]] = {}
    stopped_by = "memory budget" if lowered else "draw budget"
    kept = points[-1]
    posterior: xr.Dataset | None = None  # the latest snapshot, dropped between checks
    first: xr.Dataset | None = None
    try:
        while k < len(points):
            if progress[0] >= points[k] or _finished(sampler):
                posterior = snapshot(sampler, names)
                keys = names or [str(n) for n in posterior.data_vars]
                ready = _complete(posterior, keys) if posterior.data_vars else 0
                while k < len(points) and points[k] <= ready:
                    checked.append(points[k])
                    first = posterior[keys].isel(draw=slice(0, points[k]))
                    worst, unmet = diagnose(first, target)
                    log.debug("check at %d draws per chain: %s", points[k], worst)
                    if not unmet:
                        stopped_by, kept = "target", points[k]
                        break
                    k = next_check(points, k, worst, target)
                # a snapshot copies the whole trace: not held while the chains go on, and the
                # heap's freed blocks handed back (the diagnostics' blocks sit under glibc's
                # mmap threshold)
                posterior = first = None
                release_memory()
                if stopped_by == "target" or k >= len(points):
                    break
            elapsed = time.perf_counter() - start
            if target.max_seconds is not None and elapsed > target.max_seconds:
                stopped_by = "time budget"
                ready = max(progress[0], max(checked, default=0))
                kept = max([p for p in points if p <= ready], default=ready)
                break
            time.sleep(poll)
    finally:
        tree = sampler.abort()
    if stopped_by == "time budget":
        if kept < 2:
            raise RuntimeError(
                f"the time budget ({target.max_seconds} s) ran out before every chain had two draws"
            )
        if not checked or kept != checked[-1]:
            posterior = tree["posterior"].to_dataset()
            keys = names or [str(n) for n in posterior.data_vars]
            kept = min(kept, _complete(posterior, keys))
            worst, unmet = diagnose(posterior[keys].isel(draw=slice(0, kept)), target)
    verdict = Verdict(
        draws=int(kept),
        stopped_by=stopped_by,
        reached=stopped_by == "target",
        checks=len(checked),
        seconds=round(time.perf_counter() - start, 3),
        worst={k: round(v, 4) for k, v in worst.items()},
        unmet={} if stopped_by == "target" else unmet,
        target=asdict(target),
        checked=checked,
        memory_draws=budget if lowered else None,
    )
    return truncate(tree, kept), verdict
