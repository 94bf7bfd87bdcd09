"""Comparing two metrics documents (one per engine) with a readable failure."""

from __future__ import annotations

# what may differ between two runs: when the document was made, where the workspace is, timings
VOLATILE = {"generated_at", "seconds", "started_at", "finished_at", "workspace"}


def strip(doc):
    """``doc`` without its VOLATILE fields, at any depth."""
    if isinstance(doc, dict):
        return {k: strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [strip(v) for v in doc]
    return doc


def diff(a, b, path: str = "") -> list[str]:
    """Where two JSON-like documents differ (every place, in document order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r:.120} != {b!r:.120}"]
