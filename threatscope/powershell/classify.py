"""Obfuscated or not: a small gradient-boosted tree ensemble over threatscope.powershell.features.

The model is the JSON file next to this module (`obfuscation_model.json`, written by
`make train-ps`): feature names, a base log-odds, 150 depth-4 trees ({"f": feature index,
"t": threshold, "l"/"r": children} or {"v": leaf value}) and the decision threshold. Inference is
pure Python: walk each tree, sum, logistic function. A logistic-regression document (kind
"logistic-regression": mean, scale, weights, bias) is read too.

Usage::

    from threatscope.powershell.classify import classify, classify_many
    r = classify("iex ('Wri'+'te-Host hi')")
    r["obfuscated"], r["score"]        # True, 0.99...
    classify(text, techniques=result.techniques)   # what the deobfuscator undid, if known
    classify_many(texts)               # a list of the same dicts

Why trees: a logistic regression over the same features (Revoke-Obfuscation's model) reaches
F1 0.84 on scripts from unseen sources; the features interact (many `+` are normal in a long
script with few strings, alarming in one with many short strings), which depth-4 trees capture,
F1 0.97. Training needs numpy (gbdt.fit); scoring does not.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from threatscope.native import native
from threatscope.powershell.features import extract

MODEL_PATH = Path(__file__).with_name("obfuscation_model.json")


class Model:
    """A standardised logistic regression loaded from its JSON form."""

    def __init__(self, doc: dict[str, Any]):
        self.doc = doc
        self.names: list[str] = list(doc["features"])
        self.threshold = float(doc.get("threshold", 0.5))
        self.kind = doc.get("kind", "logistic-regression")
        if self.kind == "gbdt":
            self.base = float(doc["base"])
            # trees as tuples of parallel lists: (feature, threshold, left, right, value)
            self.trees = [_flat(t) for t in doc["trees"]]
            self._gbdt = _tree_sum(self.trees)
            self._packed = _pack_trees(self.trees)
            return
        self.mean: list[float] = [float(x) for x in doc["mean"]]
        self.scale: list[float] = [float(x) or 1.0 for x in doc["scale"]]
        self.weights: list[float] = [float(x) for x in doc["weights"]]
        self.bias = float(doc["bias"])
        self.threshold = float(doc.get("threshold", 0.5))
        # fold standardisation into the weights: w*(x-m)/s = (w/s)*x - w*m/s
        self.w = [w / s for w, s in zip(self.weights, self.scale, strict=True)]
        self.b = self.bias - sum(w * m / s for w, m, s in
                                 zip(self.weights, self.mean, self.scale, strict=True))

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> Model:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def score_features(self, f: dict[str, float]) -> float:
        if self.kind == "gbdt":
            row = [f.get(name, 0.0) for name in self.names]
            c = native()
            total = c.gbdt_sum(row, *self._packed) if c is not None else self._gbdt(row)
            z = max(-60.0, min(60.0, self.base + total))
            return 1.0 / (1.0 + math.exp(-z))
        z = self.b + sum(w * f.get(name, 0.0) for w, name in zip(self.w, self.names, strict=True))
        z = max(-60.0, min(60.0, z))
        return 1.0 / (1.0 + math.exp(-z))

    def explain(self, f: dict[str, float], top: int = 5) -> list[tuple[str, float]]:
        """Logistic regression only: the features that pushed this score most, with their
        contribution to the logit (empty for trees)."""
        if self.kind == "gbdt":
            return []
        contrib = [(name, w * (f.get(name, 0.0) - m) / s) for name, w, m, s in
                   zip(self.names, self.weights, self.mean, self.scale, strict=True)]
        return sorted(contrib, key=lambda x: -abs(x[1]))[:top]


def _flat(tree: list[dict[str, Any]]) -> tuple[list[int], list[float], list[int], list[int],
                                              list[float]]:
    feat = [int(n.get("f", -1)) if "v" not in n else -1 for n in tree]
    thr = [float(n.get("t", 0.0)) for n in tree]
    left = [int(n.get("l", 0)) for n in tree]
    right = [int(n.get("r", 0)) for n in tree]
    val = [float(n.get("v", 0.0)) for n in tree]
    return feat, thr, left, right, val


def _tree_sum(trees: list[tuple[list[int], list[float], list[int], list[int], list[float]]]
              ) -> Callable[[list[float]], float]:
    """The ensemble's sum for a feature row, walking the trees (without the C extension; the
    model is data and is read as data: no code is generated from it)."""

    def total(r: list[float]) -> float:
        out = 0.0
        for feat, thr, left, right, val in trees:
            i = 0
            while feat[i] >= 0:
                i = left[i] if r[feat[i]] <= thr[i] else right[i]
            out += val[i]
        return out

    return total


def _pack_trees(trees: list[tuple[list[int], list[float], list[int], list[int], list[float]]]
                ) -> tuple[bytes, bytes]:
    """The trees as _native.gbdt_sum reads them: "<iiiidd" nodes (feature, left, right, 0,
    threshold, value; children as indices into all the nodes) and the int32 roots."""
    nodes, roots = [], []
    for feat, thr, left, right, val in trees:
        base = len(nodes)
        roots.append(base)
        nodes += [struct.pack("<iiiidd", f, base + lt if f >= 0 else -1, base + rt if f >= 0 else -1,
                              0, t, v)
                  for f, t, lt, rt, v in zip(feat, thr, left, right, val, strict=True)]
    return b"".join(nodes), struct.pack(f"<{len(roots)}i", *roots)


@cache
def default_model() -> Model:
    """The shipped model (loaded once)."""
    return Model.load()


def classify(text: str | bytes, techniques: Iterable[str] | None = None,
             model: Model | None = None) -> dict[str, Any]:
    """{"obfuscated": bool, "score": float in [0, 1], "features": dict} for one script or
    command line. ``techniques``: what the deobfuscator undid (the model was trained with
    them); deobfuscated here when not given. Never raises on str/bytes input; reads at most
    features.MAX_CHARS chars."""
    m = model or default_model()
    try:
        if techniques is None:
            from threatscope.powershell.deobfuscate import deobfuscate

            techniques = deobfuscate(text).techniques
        f = extract(text, techniques)
    except Exception:  # defensive: a classifier must not stop a pipeline
        f = extract("")
    s = m.score_features(f)
    return {"obfuscated": s >= m.threshold, "score": round(s, 6), "features": f}


def classify_many(texts: Sequence[str | bytes],
                  techniques: Sequence[Iterable[str] | None] | None = None,
                  model: Model | None = None) -> list[dict[str, Any]]:
    """classify() over a batch; `techniques`, when given, is parallel to `texts`."""
    m = model or default_model()
    techs = techniques if techniques is not None else [None] * len(texts)
    return [classify(t, tq, m) for t, tq in zip(texts, techs, strict=True)]
