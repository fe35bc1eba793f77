"""Krippendorff's alpha for nominal data, from (unit, value) codes.

A unit here is one comparison item on one criterion; its values are the votes it received
(objective_a won / objective_b won / tie). Units with fewer than two values are not pairable and
do not count.

References
----------
Krippendorff, K. (2011). Computing Krippendorff's Alpha-Reliability. Annenberg School for
Communication, University of Pennsylvania. https://repository.upenn.edu/asc_papers/43
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AlphaResult:
    alpha: float  # NaN when undefined (no pairable values, or only one value ever used)
    units: int  # pairable units (two or more values)
    values: int  # pairable values n
    percent_agreement: float  # share of agreeing pairs of values within units

    def to_dict(self) -> dict:
        return asdict(self)


def krippendorff_alpha_nominal(units, values) -> AlphaResult:
    """Krippendorff's alpha (nominal) of values coded as integers ``>= 0``, grouped by ``units``.

    Parameters
    ----------
    units, values : array_like of int, shape (N,)
        One entry per assigned value: the unit it belongs to and the value's category code.

    Examples
    --------
    Krippendorff (2011), section C (nominal data, 4 observers, 12 units, missing values):
    alpha = 0.743.

    >>> m = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    ...      [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    ...      [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    ...      [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    >>> round(alpha_from_matrix(m).alpha, 3)
    0.743
    """
    units = np.asarray(units, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    if len(units) == 0:
        return AlphaResult(float("nan"), 0, 0, float("nan"))
    _, u = np.unique(units, return_inverse=True)
    v_levels, v = np.unique(values, return_inverse=True)
    n_u, n_v = int(u.max()) + 1, len(v_levels)
    nuc = np.bincount(u * n_v + v, minlength=n_u * n_v).reshape(n_u, n_v).astype(float)
    m_u = nuc.sum(axis=1)
    nuc = nuc[m_u >= 2]
    m_u = m_u[m_u >= 2]
    if len(m_u) == 0:
        return AlphaResult(float("nan"), 0, 0, float("nan"))
    # Coincidences within units: o_cc = sum_u n_uc (n_uc - 1) / (m_u - 1); n_c = sum_u n_uc.
    o_diag = (nuc * (nuc - 1) / (m_u - 1)[:, None]).sum(axis=0)
    n_c = nuc.sum(axis=0)
    n = n_c.sum()
    observed = n - o_diag.sum()  # sum_{c != k} o_ck
    expected = (n * n - (n_c * n_c).sum()) / (n - 1)  # sum_{c != k} n_c n_k / (n - 1)
    alpha = 1.0 - observed / expected if expected > 0 else float("nan")
    agree = (nuc * (nuc - 1)).sum() / (m_u * (m_u - 1)).sum()
    return AlphaResult(float(alpha), int(len(m_u)), int(n), float(agree))


def alpha_from_matrix(matrix) -> AlphaResult:
    """Nominal alpha of a raters x units matrix (``None`` or NaN = missing), like ``krippendorff.alpha``."""
    m = np.array([[np.nan if x is None else x for x in row] for row in matrix], dtype=float)
    r, c = np.nonzero(~np.isnan(m))
    _, codes = np.unique(m[r, c], return_inverse=True)
    return krippendorff_alpha_nominal(c, codes)


def alpha_bootstrap(units, values, replicates: int, rng: np.random.Generator, confidence: float = 0.95):
    """Percentile interval of nominal alpha, resampling units (items) with replacement.

    A replicate gives each pairable unit a multinomial weight; alpha's coincidence sums are
    linear in the units, so all replicates are two matrix products. Returns ``(low, high)``
    (NaN when undefined)."""
    from studyapp.stats.resample import cluster_weights, percentile_interval

    units = np.asarray(units, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    if len(units) == 0 or replicates == 0:
        return float("nan"), float("nan")
    _, u = np.unique(units, return_inverse=True)
    v_levels, v = np.unique(values, return_inverse=True)
    n_u, n_v = int(u.max()) + 1, len(v_levels)
    nuc = np.bincount(u * n_v + v, minlength=n_u * n_v).reshape(n_u, n_v).astype(float)
    m_u = nuc.sum(axis=1)
    nuc, m_u = nuc[m_u >= 2], m_u[m_u >= 2]
    if len(m_u) == 0:
        return float("nan"), float("nan")
    per_unit_o = nuc * (nuc - 1) / (m_u - 1)[:, None]
    w = cluster_weights(len(m_u), replicates, rng).astype(float)
    o_diag = w @ per_unit_o
    n_c = w @ nuc
    n = n_c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = n - o_diag.sum(axis=1)
        expected = (n * n - (n_c * n_c).sum(axis=1)) / (n - 1)
        alpha = np.where(expected > 0, 1.0 - observed / expected, np.nan)
    lo, hi = percentile_interval(alpha[:, None], confidence)
    return float(lo[0]), float(hi[0])
