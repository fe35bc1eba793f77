"""The primary test of every cell: a logistic model of "focal won" with the side shown as a
covariate and two-way (annotator x prompt) cluster-robust standard errors.

Model, per cell (focal vs one baseline, one criterion)::

    logit P(focal wins) = b0 + b1 * side,   side = +1 (focal shown left) / -1 (right)

``b0`` is the side-balanced log-odds of preferring the focal objective; H0: b0 = 0. With the
side covariate the model is saturated, so the maximum-likelihood fit is closed form (the win share
on each side). Its variance is the Cameron-Gelbach-Miller two-way cluster-robust sandwich,
``V_annotator + V_prompt - V_annotator&prompt``, each part with statsmodels' small-sample factor
``G/(G-1) * (N-1)/(N-K)`` (the numbers equal ``statsmodels`` ``Logit(...).fit(cov_type="cluster",
cov_kwds={"groups": [annotator, prompt]})``, checked in the tests). When that difference is
smaller than either one-way variance (it can even be negative) the larger one-way variance is
used (Cameron, Gelbach & Miller 2011, section 2.3). The reference distribution is Student's t with
G - 1 degrees of freedom, G the smaller number of clusters (Cameron & Miller 2015, section VI).

Small samples and degenerate data (each case is named in ``method`` and ``note``):

- fewer than ``min_clusters`` annotators or prompts: no test (``p_value`` None): the
  cluster-robust variance is not trustworthy there, and no verdict is given;
- a side on which every vote went the same way (or a side never shown): the model without the
  side covariate (the saturated fit would be at infinity);
- every vote the same way: no logistic fit exists; the test is then the exact sign test counting
  each cluster of the scarcer kind as one vote (G of G, p = 2 * 0.5**G), which cannot be more
  significant than G independent votes would be.

Everything works on arrays of all cells at once (``np.bincount``), so 6 cells of 1M votes take a
fraction of a second, and a 300-vote cell well under a millisecond.

References
----------
Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2011). Robust inference with multiway clustering.
J. Business & Economic Statistics 29(2), 238-249.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
J. Human Resources 50(2), 317-372.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

METHOD_SIDE = "logit+side, two-way cluster-robust"
METHOD_NO_SIDE = "logit, two-way cluster-robust (side dropped: one side all one way)"
METHOD_SIGN = "cluster sign test (every vote one way)"
METHOD_NONE = "no test"


@dataclass
class CellTests:
    """Per-cell arrays (length = number of cells)."""

    n: np.ndarray  # votes in the model (non-tie, or all with ties as half)
    annotators: np.ndarray
    prompts: np.ndarray
    estimate: np.ndarray  # expit(b0): side-balanced preference
    log_odds: np.ndarray  # b0
    se: np.ndarray
    se_naive: np.ndarray  # model-based (independent votes) SE of b0
    stat: np.ndarray  # t statistic b0 / se
    df: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    method: list
    note: list

    @property
    def design_effect(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.se / self.se_naive) ** 2

    def z_equivalent(self) -> np.ndarray:
        """The standard-normal quantile with the same two-sided p-value, signed like b0 (for
        boundaries computed on the z scale)."""
        with np.errstate(invalid="ignore"):
            z = _st.norm.isf(self.p_value / 2)
        return np.where(np.isnan(self.p_value), np.nan, np.sign(self.log_odds) * z)


def _expit(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _logit(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(p) - np.log1p(-p)


def group_index(cell: np.ndarray, annotator: np.ndarray, prompt: np.ndarray, n_cells: int) -> dict:
    """The cluster of every vote within its cell, for the three groupings of the two-way
    sandwich. Depends only on who voted on what, so callers that re-test changed outcomes
    (fragility) compute it once."""
    cell = np.asarray(cell, dtype=np.int64)
    annotator = np.asarray(annotator, dtype=np.int64)
    prompt = np.asarray(prompt, dtype=np.int64)
    pairs = annotator * (int(prompt.max()) + 1 if len(prompt) else 1) + prompt
    out = {}
    for name, grp in (("annotator", annotator), ("prompt", prompt), ("both", pairs)):
        uniq, inv = np.unique(grp * n_cells + cell, return_inverse=True)
        out[name] = (inv.reshape(-1), uniq % n_cells)
    return out


def side_sums(index: dict, focal_left: np.ndarray, y: np.ndarray) -> dict:
    """Per grouping and group: (votes, outcome sum) with the focal image on the left, and on the
    right. The model's scores are linear in these, so a test needs nothing else."""
    left = np.asarray(focal_left, dtype=bool)
    y = np.asarray(y, dtype=float)
    out = {}
    for name, (inv, gcell) in index.items():
        g = len(gcell)
        out[name] = (
            gcell,
            np.bincount(inv[left], minlength=g).astype(float),
            np.bincount(inv[~left], minlength=g).astype(float),
            np.bincount(inv[left], weights=y[left], minlength=g),
            np.bincount(inv[~left], weights=y[~left], minlength=g),
        )
    return out


def clustered_tests(
    cell: np.ndarray,
    y: np.ndarray,
    focal_left: np.ndarray,
    annotator: np.ndarray,
    prompt: np.ndarray,
    n_cells: int,
    *,
    confidence: float = 0.95,
    min_clusters: int = 10,
    groups_index: dict | None = None,
) -> CellTests:
    """The primary test of each cell.

    Parameters
    ----------
    cell : int array, the cell of each vote (0..n_cells-1); votes outside every cell are not passed
    y : float array, 1 focal won, 0 lost (0.5 for a tie counted as half a win)
    focal_left : bool array, the focal objective was shown on the left
    annotator, prompt : int arrays, cluster codes (>= 0)
    groups_index : :func:`group_index` of these votes, when the caller has it already
    """
    cell = np.asarray(cell, dtype=np.int64)
    index = groups_index if groups_index is not None else group_index(cell, annotator, prompt, n_cells)
    return tests_from_sums(side_sums(index, focal_left, y), n_cells, confidence=confidence, min_clusters=min_clusters)


def tests_from_sums(sums: dict, n_cells: int, *, confidence: float = 0.95, min_clusters: int = 10) -> CellTests:
    """:func:`clustered_tests` from :func:`side_sums` (callers that change outcomes, such as the
    fragility search, update the sums instead of recounting every vote)."""
    nc = n_cells
    gcell_a, nl_a, nr_a, yl_a, yr_a = sums["annotator"]
    n_l = np.bincount(gcell_a, weights=nl_a, minlength=nc)
    n_r = np.bincount(gcell_a, weights=nr_a, minlength=nc)
    y_l = np.bincount(gcell_a, weights=yl_a, minlength=nc)
    y_r = np.bincount(gcell_a, weights=yr_a, minlength=nc)
    n = n_l + n_r
    with np.errstate(invalid="ignore", divide="ignore"):
        p_l, p_r, p_all = y_l / n_l, y_r / n_r, (y_l + y_r) / n
    interior = lambda p: (p > 0) & (p < 1)  # noqa: E731
    with_side = interior(p_l) & interior(p_r)
    no_side = ~with_side & interior(p_all)
    one_way = ~with_side & ~no_side & (n > 0)

    # Fitted probabilities per cell and side; the intercept-only model fits p_all on both sides.
    mu_l = np.where(with_side, p_l, p_all)
    mu_r = np.where(with_side, p_r, p_all)
    with np.errstate(invalid="ignore"):  # inf - inf where a side is degenerate: not selected
        b0 = np.where(with_side, (_logit(p_l) + _logit(p_r)) / 2, _logit(p_all))
    k_params = np.where(with_side, 2.0, 1.0)
    # Hessian of the (saturated or intercept-only) fit; w = first column of its inverse.
    a = n_l * mu_l * (1 - mu_l)
    b = n_r * mu_r * (1 - mu_r)
    with np.errstate(invalid="ignore", divide="ignore"):
        det = (a + b) ** 2 - (a - b) ** 2  # = 4ab
        w0 = np.where(with_side, (a + b) / det, 1.0 / (a + b))
        w1 = np.where(with_side, -(a - b) / det, 0.0)
    se_naive = np.sqrt(np.where(with_side | no_side, w0, np.nan))

    var = {}
    groups = {}
    for name in ("annotator", "prompt", "both"):
        gcell, nl, nr, yl, yr = sums[name]
        # A group's score sums: residuals on each side; the side score is +left -right.
        r_l = yl - nl * mu_l[gcell]
        r_r = yr - nr * mu_r[gcell]
        s0 = r_l + r_r
        s1 = np.where(with_side[gcell], r_l - r_r, 0.0)
        g = np.bincount(gcell[(nl + nr) > 0], minlength=nc)  # groups with a vote here
        m00 = np.bincount(gcell, weights=s0 * s0, minlength=nc)
        m01 = np.bincount(gcell, weights=s0 * s1, minlength=nc)
        m11 = np.bincount(gcell, weights=s1 * s1, minlength=nc)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = g / (g - 1.0) * (n - 1.0) / (n - k_params)
            var[name] = corr * (w0 * w0 * m00 + 2 * w0 * w1 * m01 + w1 * w1 * m11)
        groups[name] = g
    two_way = var["annotator"] + var["prompt"] - var["both"]
    v = np.fmax(two_way, np.fmax(var["annotator"], var["prompt"]))
    with np.errstate(invalid="ignore"):
        se = np.sqrt(v)
    g_min = np.minimum(groups["annotator"], groups["prompt"])
    df = np.maximum(g_min - 1, 1).astype(float)
    tcrit = _st.t.isf((1 - confidence) / 2, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = b0 / se
    p = 2 * _st.t.sf(np.abs(stat), df)
    lo, hi = _expit(b0 - tcrit * se), _expit(b0 + tcrit * se)
    estimate = _expit(b0)

    # Every vote one way: the cluster sign test and a Clopper-Pearson interval on G of G.
    sign_p = np.minimum(1.0, 2.0 * 0.5 ** g_min.astype(float))
    cp_lo = np.where(g_min > 0, (1 - confidence) / 2, np.nan) ** (1.0 / np.maximum(g_min, 1))
    all_won = p_all >= 1
    p = np.where(one_way, sign_p, p)
    lo = np.where(one_way, np.where(all_won, cp_lo, 0.0), lo)
    hi = np.where(one_way, np.where(all_won, 1.0, 1 - cp_lo), hi)
    estimate = np.where(one_way, p_all, estimate)
    stat = np.where(one_way, np.nan, stat)
    b0 = np.where(one_way, np.where(all_won, np.inf, -np.inf), b0)

    too_few = (g_min < min_clusters) | (n == 0)
    methods, notes = [], []
    for k in range(nc):
        if n[k] == 0:
            methods.append(METHOD_NONE)
            notes.append("no votes")
        elif too_few[k]:
            methods.append(METHOD_NONE)
            notes.append(
                f"too few clusters for a verdict: {groups['annotator'][k]} annotator(s) and {groups['prompt'][k]} "
                f"prompt(s); at least {min_clusters} of each are needed"
            )
        elif one_way[k]:
            methods.append(METHOD_SIGN)
            notes.append(f"every vote went one way; counted as {g_min[k]} independent votes")
        elif with_side[k]:
            methods.append(METHOD_SIDE)
            notes.append("")
        else:
            methods.append(METHOD_NO_SIDE)
            notes.append("")
    p = np.where(too_few, np.nan, p)
    return CellTests(
        n=n.astype(np.int64),
        annotators=groups["annotator"],
        prompts=groups["prompt"],
        estimate=np.where(n > 0, estimate, np.nan),
        log_odds=np.where(n > 0, b0, np.nan),
        se=np.where(one_way | (n == 0), np.nan, se),
        se_naive=se_naive,
        stat=np.where(n > 0, stat, np.nan),
        df=df,
        p_value=p,
        ci_low=np.where(n > 0, lo, np.nan),
        ci_high=np.where(n > 0, hi, np.nan),
        method=methods,
        note=notes,
    )
