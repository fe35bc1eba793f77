"""Cluster bootstrap on cluster-level count arrays.

Votes are first aggregated to one row of counts per cluster (prompt or annotator); a bootstrap
replicate draws clusters with replacement, which is the same as giving each cluster a
multinomial weight (how often it was drawn). Replicate totals are then one matrix product
``weights @ counts``, so the cost does not depend on the number of votes.
"""

from __future__ import annotations

import numpy as np

# Streams of the bootstrap seed: each use of randomness gets its own, so adding one never
# changes the numbers of another.
STREAM_PROMPTS = 1
STREAM_ANNOTATORS = 2
STREAM_BT = 3


def rng_for(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


def cluster_weights(n_clusters: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``(replicates, n_clusters)`` draw counts: each row resamples ``n_clusters`` clusters."""
    if n_clusters == 0 or replicates == 0:
        return np.zeros((replicates, n_clusters), dtype=np.int64)
    idx = rng.integers(0, n_clusters, size=(replicates, n_clusters))
    idx += (np.arange(replicates) * n_clusters)[:, None]
    return np.bincount(idx.ravel(), minlength=replicates * n_clusters).reshape(replicates, n_clusters)


def resample_totals(counts: np.ndarray, replicates: int, rng: np.random.Generator, *, chunk: int = 2_000_000) -> np.ndarray:
    """Bootstrap totals of cluster-level ``counts`` (shape ``(n_clusters, ...)``).

    Returns an array of shape ``(replicates, ...)``: replicate b's sum of the counts of the
    clusters it drew. Replicates are drawn in chunks of about ``chunk`` cluster draws to bound
    memory; the draws do not depend on the chunk size.
    """
    counts = np.asarray(counts, dtype=float)
    c = counts.shape[0]
    flat = counts.reshape(c, int(np.prod(counts.shape[1:], dtype=np.int64)))
    out = np.empty((replicates, flat.shape[1]))
    step = max(1, chunk // max(c, 1))
    for start in range(0, replicates, step):
        stop = min(replicates, start + step)
        out[start:stop] = cluster_weights(c, stop - start, rng) @ flat
    return out.reshape((replicates,) + counts.shape[1:])


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring NaN replicates (undefined rates)."""
    a = (1 - confidence) / 2
    samples = np.asarray(samples, dtype=float)
    if samples.shape[0] == 0:
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan.copy()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanquantile(samples, a, axis=0)
            hi = np.nanquantile(samples, 1 - a, axis=0)
    return lo, hi
