"""Bradley-Terry strengths by maximum likelihood, batched over bootstrap replicates.

Model: P(i beats j) = 1 / (1 + exp(-(s_i - s_j))), strengths on the log-odds scale, centred to
mean 0. Data are deduplicated pair counts: for pair m = (i_m, j_m), ``wins[..., m]`` is how often
i_m won and ``losses[..., m]`` how often j_m won. Ties are folded in by the caller (dropped, or
half a win for each side: the same likelihood as the half-win logistic fit of FastChat).

The MLE is found by Newton's method on the concave log-likelihood, for all replicates at once
(``(B, K)`` strengths, ``(B, K, K)`` Hessians). It exists and is unique iff the "beats" graph is
strongly connected (Zermelo 1929; Ford 1957); otherwise the strengths are NaN.

References
----------
Bradley, R. A. & Terry, M. E. (1952). Rank analysis of incomplete block designs. Biometrika 39.
Ford, L. R. (1957). Solution of a ranking problem from binary comparisons. AMM 64, 28-33.
"""

from __future__ import annotations

import numpy as np


def _strongly_connected(n_items: int, pairs: np.ndarray, wins: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """For each replicate (leading axes), whether every item reaches every other via 'beats' edges."""
    lead = wins.shape[:-1]
    adj = np.zeros(lead + (n_items, n_items), dtype=bool)
    adj[..., pairs[:, 0], pairs[:, 1]] = wins > 0
    adj[..., pairs[:, 1], pairs[:, 0]] = losses > 0
    reach = adj | np.eye(n_items, dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(max(n_items, 2)))))):
        reach = (reach.astype(np.float64) @ reach.astype(np.float64)) > 0
    return reach.all(axis=(-2, -1))


def bt_fit(
    n_items: int,
    pairs,
    wins,
    losses,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """Bradley-Terry MLE strengths.

    Parameters
    ----------
    n_items : int
        Number of items K.
    pairs : array_like of int, shape (M, 2)
        Item indices (i, j) of each compared pair, i != j.
    wins, losses : array_like, shape (M,) or (B, M)
        Times i (wins) and j (losses) won each pair; may be fractional (half-won ties). A
        leading axis fits B data sets (bootstrap replicates) at once.

    Returns
    -------
    ndarray, shape (K,) or (B, K)
        Strengths (natural-log odds scale, mean 0); NaN for a data set whose MLE does not exist
        (an item that never won or never lost, or a disconnected comparison graph).

    Examples
    --------
    Two items, 3 wins to 1: s_0 - s_1 = log(3).

    >>> s = bt_fit(2, [(0, 1)], [3.0], [1.0])
    >>> bool(np.isclose(s[0] - s[1], np.log(3)))
    True
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    wins = np.asarray(wins, dtype=float)
    losses = np.asarray(losses, dtype=float)
    single = wins.ndim == 1
    wins = np.atleast_2d(wins)
    losses = np.atleast_2d(losses)
    b, m = wins.shape
    k = n_items
    out = np.full((b, k), np.nan)
    if k == 0 or m == 0:
        return out[0] if single else out
    ok = _strongly_connected(k, pairs, wins, losses) if k > 1 else np.ones(b, dtype=bool)
    if k == 1:
        out[ok] = 0.0
        return out[0] if single else out
    w, n = wins[ok], (wins + losses)[ok]
    design = np.zeros((m, k))  # d_m = s_i - s_j
    design[np.arange(m), pairs[:, 0]] = 1.0
    design[np.arange(m), pairs[:, 1]] = -1.0
    red = design[:, :-1]  # identify the model by fixing the last strength at 0
    s = np.zeros((len(w), k - 1))
    active = np.ones(len(w), dtype=bool)
    for _ in range(max_iter):
        if not active.any():
            break
        sa = s[active]
        d = sa @ red.T
        p = 1.0 / (1.0 + np.exp(-d))
        grad = (w[active] - n[active] * p) @ red
        weight = n[active] * p * (1.0 - p)
        hess = np.einsum("bm,mi,mj->bij", weight, red, red)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        # Damp huge steps (far from the optimum the quadratic model overshoots).
        big = np.abs(step).max(axis=1, keepdims=True)
        step = np.where(big > 5.0, step * (5.0 / np.maximum(big, 1e-300)), step)
        s[active] = sa + step
        idx = np.flatnonzero(active)
        active[idx[np.abs(step).max(axis=1) < tol]] = False
    full = np.concatenate([s, np.zeros((len(s), 1))], axis=1)
    full -= full.mean(axis=1, keepdims=True)
    out[ok] = full
    return out[0] if single else out
