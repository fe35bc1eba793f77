"""Binomial tests, proportion intervals, multiplicity adjustment and the sample-size planner.

All functions are vectorised over their count arguments and return numpy arrays (or floats for
scalar input). They assume validated input (counts ``0 <= k <= n``); the public entry points
that take user values say what is wrong with them.

References
----------
Clopper, C. J. & Pearson, E. S. (1934). The use of confidence or fiducial limits illustrated in
the case of the binomial. Biometrika 26, 404-413.
Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference.
JASA 22, 209-212.
Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6.
Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57, 289-300.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st


def sign_test_pvalue(k, n):
    """Exact two-sided binomial test of ``k`` successes in ``n`` trials against p = 0.5.

    The two-sided p-value sums the probabilities of all outcomes no more likely than ``k``
    (the rule of R's ``binom.test`` and ``scipy.stats.binomtest``); at p = 0.5 the distribution
    is symmetric, so it is ``min(1, 2 * P(X <= min(k, n - k)))``. ``n == 0`` gives NaN.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    m = np.minimum(k, n - k)
    with np.errstate(invalid="ignore"):
        p = np.where(m * 2 == n, 1.0, np.minimum(1.0, 2.0 * _st.binom.cdf(m, n, 0.5)))
    p = np.where(n > 0, p, np.nan)
    return p[()] if p.ndim == 0 else p


def clopper_pearson(k, n, confidence: float = 0.95):
    """Exact (Clopper-Pearson) interval for a binomial proportion; NaN where ``n == 0``."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    a = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, _st.beta.ppf(a / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, _st.beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
    lo = np.where(n > 0, lo, np.nan)
    hi = np.where(n > 0, hi, np.nan)
    return (lo[()], hi[()]) if lo.ndim == 0 else (lo, hi)


def wilson(k, n, confidence: float = 0.95):
    """Wilson score interval (no continuity correction); ``k`` may be fractional (ties as half)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z = _st.norm.ppf(1 - (1 - confidence) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (k + z * z / 2) / (n + z * z)
        half = z / (n + z * z) * np.sqrt(np.maximum(k * (n - k) / n, 0.0) + z * z / 4)
        rate = k / n
        # Rounding can put the bound a hair past the rate at 0 or n (5.6e-17 above 0 at 0 of
        # 3): an interval must lie in [0, 1] and contain its rate.
        lo = np.where(n > 0, np.clip(np.minimum(centre - half, rate), 0.0, 1.0), np.nan)
        hi = np.where(n > 0, np.clip(np.maximum(centre + half, rate), 0.0, 1.0), np.nan)
    return (lo[()], hi[()]) if lo.ndim == 0 else (lo, hi)


def _adjusted(pvalues, adjust):
    """An adjustment over the non-NaN entries; NaNs are not in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q = p[ok]
        order = np.argsort(q, kind="stable")
        adj = np.empty(len(q))
        adj[order] = np.minimum(1.0, adjust(q[order]))
        out[ok] = adj
    return out


def _holm_sorted(q):
    m = len(q)
    return np.maximum.accumulate(q * np.arange(m, 0, -1))


def _bh_sorted(q):
    m = len(q)
    return np.minimum.accumulate((q * m / np.arange(1, m + 1))[::-1])[::-1]


# Written here rather than calling statsmodels' ``multipletests``: its Holm branch runs
# ``gc.collect()`` on every call, which costs tens of milliseconds in a long-lived web process
# with many objects. The numbers equal statsmodels' ``method="holm"`` / ``"fdr_bh"`` (tests).


def holm(pvalues):
    """Holm step-down adjusted p-values (as statsmodels ``method="holm"``, not its default Holm-Sidak)."""
    return _adjusted(pvalues, _holm_sorted)


def benjamini_hochberg(pvalues):
    """Benjamini-Hochberg (FDR) adjusted p-values (as statsmodels ``method="fdr_bh"``)."""
    return _adjusted(pvalues, _bh_sorted)


def critical_count(n, alpha: float):
    """Largest ``c`` such that the two-sided exact test rejects p = 0.5 for ``k <= c`` (-1: never)."""
    n = np.asarray(n, dtype=np.int64)
    c = _st.binom.ppf(alpha / 2, n, 0.5).astype(np.int64)
    # ppf gives the smallest c with cdf(c) >= alpha/2; step back unless the test rejects at c.
    c = np.where(sign_test_pvalue(c, n) <= alpha, c, c - 1)
    return c


def exact_power(n, p: float, alpha: float = 0.05):
    """Power of the two-sided exact sign test (reject when the p-value <= ``alpha``) at true ``p``."""
    n = np.asarray(n, dtype=np.int64)
    c = critical_count(n, alpha)
    power = _st.binom.cdf(c, n, p) + _st.binom.sf(n - c - 1, n, p)
    return np.where(c >= 0, power, 0.0)


@dataclass(frozen=True)
class SampleSize:
    """The planner's answer. ``*_first``: the first n reaching the power; ``*_stable``: the n from
    which every larger n reaches it (exact power zig-zags with n). ``non_tie_*`` count non-tie
    votes per comparison and criterion; ``votes_*`` scale them by the design effect and by
    ``1 / (1 - tie_rate)``."""

    p: float
    power: float
    alpha: float
    n_tests: int
    alpha_per_test: float
    tie_rate: float
    design_effect: float
    normal_approx: float
    non_tie_first: int
    non_tie_stable: int
    votes_first: int
    votes_stable: int

    def to_dict(self) -> dict:
        return asdict(self)


def votes_needed(
    p: float,
    power: float = 0.8,
    alpha: float = 0.05,
    n_tests: int = 6,
    tie_rate: float = 0.0,
    design_effect: float = 1.0,
) -> SampleSize:
    """Votes needed per comparison and criterion to detect a true preference ``p`` vs 0.5.

    Exact two-sided binomial (sign) test. Under Holm over ``n_tests`` tests the smallest p-value
    is compared with ``alpha / n_tests`` (Holm's first step, the same as Bonferroni), so that is
    the per-test level planned for.

    Examples
    --------
    STUDY.md 4.8: 60% at alpha = 0.05 needs 199 non-tie votes (all n >= 210 suffice).

    >>> r = votes_needed(0.6, n_tests=1)
    >>> (r.non_tie_first, r.non_tie_stable)
    (199, 210)
    """
    problems = []
    if not (isinstance(p, (int, float)) and 0 < p < 1 and p != 0.5):
        problems.append(f"p ({p!r}) must be in (0, 1) and not 0.5")
    if not (isinstance(power, (int, float)) and 0 < power < 1):
        problems.append(f"power ({power!r}) must be in (0, 1)")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        problems.append(f"alpha ({alpha!r}) must be in (0, 1)")
    if not (isinstance(n_tests, int) and not isinstance(n_tests, bool) and n_tests >= 1):
        problems.append(f"n_tests ({n_tests!r}) must be a positive integer")
    if not (isinstance(tie_rate, (int, float)) and 0 <= tie_rate < 1):
        problems.append(f"tie_rate ({tie_rate!r}) must be in [0, 1)")
    if not (isinstance(design_effect, (int, float)) and design_effect >= 1):
        problems.append(f"design_effect ({design_effect!r}) must be >= 1")
    if problems:
        raise ValueError("; ".join(problems))
    a = alpha / n_tests
    h = abs(2 * math.asin(math.sqrt(p)) - 2 * math.asin(math.sqrt(0.5)))  # Cohen's h
    normal = ((_st.norm.ppf(1 - a / 2) + _st.norm.ppf(power)) / h) ** 2
    # Power oscillates but its dips shrink as n grows; 3x the normal approximation (+200) is far
    # past the last dip below the target for any practical p, power and alpha.
    n_max = int(3 * normal) + 200
    ns = np.arange(1, n_max + 1)
    ok = exact_power(ns, p, a) >= power
    if not ok.any() or not ok[-1]:
        raise ValueError(f"no n up to {n_max} reaches power {power} at p = {p}")
    first = int(ns[np.argmax(ok)])
    below = np.flatnonzero(~ok)
    stable = int(ns[below[-1] + 1]) if len(below) else 1
    scale = design_effect / (1 - tie_rate)
    return SampleSize(
        p=float(p),
        power=float(power),
        alpha=float(alpha),
        n_tests=int(n_tests),
        alpha_per_test=float(a),
        tie_rate=float(tie_rate),
        design_effect=float(design_effect),
        normal_approx=float(normal),
        non_tie_first=first,
        non_tie_stable=stable,
        votes_first=int(math.ceil(first * scale - 1e-9)),
        votes_stable=int(math.ceil(stable * scale - 1e-9)),
    )
