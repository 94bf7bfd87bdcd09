"""A tiny gradient-boosted tree ensemble: numpy to train, pure Python to predict.

Logistic loss, second-order (Newton) leaves, histogram splits on at most `bins` quantile
thresholds per feature, fixed depth. Small enough to ship as JSON (a few hundred nodes) and to
score in microseconds without numpy.

Usage::

    doc = fit(X, y, names)           # numpy arrays / lists; needs numpy (training only)
    p = predict_proba(doc, feature_dict)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def fit(X: Any, y: Any, names: Sequence[str], trees: int = 150, depth: int = 4,
        learning_rate: float = 0.2, bins: int = 32, l2: float = 1.0,
        min_hess: float = 2.0, class_balance: bool = True) -> dict[str, Any]:
    """Train on X (n x d) and y (0/1). Returns the JSON-able model document."""
    import numpy as np

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    thr: list[np.ndarray] = []
    B = np.empty((n, d), dtype=np.int64)
    for j in range(d):
        t = np.unique(np.quantile(X[:, j], np.linspace(0, 1, bins + 1)[1:-1]))
        thr.append(t)
        B[:, j] = np.searchsorted(t, X[:, j], side="left")  # x <= t[b] for bin b
    nb = bins
    Boff = B + (np.arange(d) * nb)[None, :]
    pos = y.sum()
    w = np.ones(n)
    if class_balance and 0 < pos < n:
        w = np.where(y == 1, n / (2 * pos), n / (2 * (n - pos)))
    p0 = float(np.clip((w * y).sum() / w.sum(), 1e-6, 1 - 1e-6))
    base = math.log(p0 / (1 - p0))
    F = np.full(n, base)
    out_trees = []
    for _ in range(trees):
        p = 1 / (1 + np.exp(-F))
        g = (p - y) * w
        h = np.maximum(p * (1 - p), 1e-6) * w
        nodes: list[dict[str, Any]] = []
        _grow(_Ctx(g, h, nodes, B, Boff, thr, d, nb, depth, l2, min_hess, learning_rate),
              np.arange(n), 0)
        tree = nodes
        out_trees.append(tree)
        F = F + np.array([_tree_value(tree, row) for row in X.tolist()])
    return {"kind": "gbdt", "features": list(names), "base": base, "trees": out_trees,
            "threshold": 0.5}


@dataclass
class _Ctx:
    g: Any
    h: Any
    nodes: list[dict[str, Any]]
    B: Any
    Boff: Any
    thr: list[Any]
    d: int
    nb: int
    depth: int
    l2: float
    min_hess: float
    learning_rate: float


def _grow(c: _Ctx, idx: Any, level: int) -> int:
    import numpy as np

    g, h, nodes, B, Boff, thr, d, nb = c.g, c.h, c.nodes, c.B, c.Boff, c.thr, c.d, c.nb
    depth, l2, min_hess, learning_rate = c.depth, c.l2, c.min_hess, c.learning_rate
    G, H = g[idx].sum(), h[idx].sum()
    me = len(nodes)
    nodes.append({})
    best = None
    if level < depth and len(idx) > 1 and H >= 2 * min_hess:
        sub = Boff[idx].ravel()
        gh = np.bincount(sub, weights=np.repeat(g[idx], d), minlength=d * nb)
        hh = np.bincount(sub, weights=np.repeat(h[idx], d), minlength=d * nb)
        GL = np.cumsum(gh.reshape(d, nb), axis=1)
        HL = np.cumsum(hh.reshape(d, nb), axis=1)
        GR, HR = G - GL, H - HL
        gain = GL**2 / (HL + l2) + GR**2 / (HR + l2) - G**2 / (H + l2)
        valid = (HL >= min_hess) & (HR >= min_hess)
        for j in range(d):  # only thresholds that exist for the feature
            valid[j, len(thr[j]):] = False
        gain = np.where(valid, gain, -np.inf)
        k = int(np.argmax(gain))
        if np.isfinite(gain.flat[k]) and gain.flat[k] > 1e-9:
            best = divmod(k, nb)
    if best is None:
        nodes[me] = {"v": float(-G / (H + l2) * learning_rate)}
        return me
    j, b = best
    mask = B[idx, j] <= b
    nodes[me] = {"f": int(j), "t": float(thr[j][b])}
    nodes[me]["l"] = _grow(c, idx[mask], level + 1)
    nodes[me]["r"] = _grow(c, idx[~mask], level + 1)
    return me



def _tree_value(tree: list[dict[str, Any]], row: Sequence[float]) -> float:
    i = 0
    while True:
        node = tree[i]
        if "v" in node:
            return node["v"]
        i = node["l"] if row[node["f"]] <= node["t"] else node["r"]


def logit(doc: dict[str, Any], row: Sequence[float]) -> float:
    """The ensemble's raw score (log-odds) for a feature row in doc["features"] order."""
    return doc["base"] + sum(_tree_value(t, row) for t in doc["trees"])


def predict_proba(doc: dict[str, Any], row: Sequence[float]) -> float:
    z = max(-60.0, min(60.0, logit(doc, row)))
    return 1.0 / (1.0 + math.exp(-z))
