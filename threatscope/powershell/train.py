"""Build the obfuscation data set, train the logistic regression, evaluate across sources.

    python -m threatscope.powershell.train [--data DIR] [--out MODEL.json] [--seed 1]   # make train-ps
    python -m threatscope.powershell.train --eval [--data DIR]                          # make eval-ps

Data (../shared/data/powershell, see its README): benign scripts are negatives and, obfuscated by
threatscope.powershell.obfuscate, positives; Unit42's decoded payloads are negatives (malicious
but clean: the model must learn "obfuscated", not "malicious"), their command lines (-enc) and
their payloads obfuscated by our families are positives. Plain command lines (a clean script line
or payload given to `powershell -Command`) are the command-line negatives; the same lines only
encoded (-EncodedCommand) are positives. Each sample's features include what the deobfuscator had
to undo (features.TECHNIQUES), as analysis.analyse passes them.

Evaluation: two folds that never share a source: fold 0 tests PowerShell/PowerShell and half of
the Unit42 families, trained on SqlServerDsc and the other half; fold 1 the reverse. Each sample
is tested once, by a model that saw nothing from its repository or malware family. The verdict
scored is the one analysis.analyse gives (the model, or a DECISIVE layer undone); the model's
alone is printed beside it. Then, over Unit42's command lines: exact recovery of their decoded
payloads and family accuracy (recovery_and_families).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from threatscope.powershell.features import FEATURE_NAMES, extract
from threatscope.powershell.obfuscate import FAMILIES, encode_command, launcher, obfuscate

# ../shared/data/powershell next to the repository (as the other public-data tests expect)
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "powershell"
SCRIPT_FAMILIES = [f for f in FAMILIES if f != "LAUNCHER"]
OBF_INPUT_CAP = 30_000  # obfuscate at most this much of a script (training time, not inference)


# (group, reason) of the decoded payloads left out by the last build_dataset (see nested_layer)
EXCLUDED: list[tuple[str, str]] = []


@dataclass
class Sample:
    text: str
    label: int  # 1 = obfuscated
    kind: str  # "script" or "cmdline"
    group: str  # source repository, or "unit42:<family>"
    how: str  # what made it: "plain", "unit42-cmdline", or the families applied


def _plain_cmdline(script: str, rng: random.Random) -> str:
    """A clean script given to powershell on the command line, as admins and tools do."""
    one = "; ".join(x.strip() for x in script.splitlines() if x.strip() and not
                    x.strip().startswith("#"))[:2000]
    exe = rng.choice(["powershell", "powershell.exe", "PowerShell.exe", "pwsh",
                      r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"])
    flags = rng.sample(["-NoProfile", "-NonInteractive", "-ExecutionPolicy Bypass", "-nop",
                        "-NoLogo", "-WindowStyle Hidden"], rng.randint(0, 2))
    cmd = rng.choice(["-Command", "-c", "-command", ""])
    return " ".join([exe, *flags, cmd, '"' + one.replace('"', '\\"') + '"']).replace("  ", " ")


def _script_piece(text: str, rng: random.Random) -> str:
    """A few consecutive statements of a script: command-line sized."""
    lines = [x for x in text.splitlines() if len(x.strip(" \t{}()")) > 3
             and not x.strip().startswith("#")]
    if not lines:
        return "Get-Date"
    i = rng.randrange(len(lines))
    j = i + rng.randint(1, 4)
    while j < len(lines) and sum(map(len, lines[i:j])) < 40:
        j += 1
    return "\n".join(lines[i:j])


def _obf(text: str, rng: random.Random, fams: list[str], layers: int) -> tuple[str, list[str]]:
    """Obfuscate for a positive label. AST alone (renamed variables, splatting) leaves a script
    as readable as before, so it is labelled obfuscated only under another layer; an output equal
    to its input (nothing to transform) is returned as ("", []) and skipped."""
    out, applied = obfuscate(text, rng, fams, layers)
    if all(f == "AST" for f in applied):
        out, more = obfuscate(out, rng, [f for f in fams if f != "AST"], 1)
        applied += more
    if out == text:
        return "", []
    return out, applied


# canonical spellings: random case is a spelling that is neither this, nor all lower/upper
_NESTED_WORDS = ("New-Object", "System.Net.WebClient", "DownloadString", "Invoke-Expression",
                 "FromBase64String", "GetField", "GetType", "Assembly", "WebClient")


def nested_layer(decoded: str) -> str:
    """Why a decoded Unit42 payload is itself obfuscated (one layer down), or "".

    Some "decoded" payloads still carry a layer: Deflate/GZip + base64 (Powerfun, Veil), random
    case (Empire stagers: NEW-OBjECT SySteM.NET.WeBClIent), a nested -enc. Those are neither
    clean negatives nor our own positives: build_dataset leaves them out (and says how many)."""
    low = decoded.lower()
    if "frombase64string" in low and ("deflatestream" in low or "gzipstream" in low):
        return "compressed"
    if re.search(r"(?i)powershell[^\n]{0,80}\s-e(nc?|ncodedcommand)?\s+[A-Za-z0-9+/]{40}", decoded):
        return "encoded"
    for canon in _NESTED_WORDS:
        w = canon.lower()
        i = low.find(w)
        while i >= 0:
            orig = decoded[i : i + len(w)]
            if min(_case_diff(orig, canon), _case_diff(orig, w), _case_diff(orig, w.upper())) >= 3:
                return "random-case"
            i = low.find(w, i + 1)
    return ""


def _case_diff(a: str, b: str) -> int:
    return sum(1 for x, y in zip(a, b, strict=True) if x != y)


def _cap(items: list, key, limit: int) -> list:
    seen: dict[str, int] = {}
    out = []
    for it in items:
        k = key(it)
        if seen.get(k, 0) < limit:
            seen[k] = seen.get(k, 0) + 1
            out.append(it)
    return out


def build_dataset(data: Path = DEFAULT_DATA, seed: int = 1,
                  limit: int | None = None) -> list[Sample]:
    """All samples, reproducible for a seed. Raises FileNotFoundError when `data` is absent.
    `limit`: at most this many benign scripts per repository and Unit42 records per family
    (a quick subset for tests)."""
    rng = random.Random(seed)
    out: list[Sample] = []
    EXCLUDED.clear()
    with open(data / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] == "benign"]
    if limit is not None:
        rows = _cap(rows, lambda r: r["source_repo"], limit)
    for r in rows:
        text = (data / r["file"]).read_text(encoding="utf-8", errors="replace")
        g = r["source_repo"]
        out.append(Sample(text, 0, "script", g, "plain"))
        obf, fams = _obf(text[:OBF_INPUT_CAP], rng, SCRIPT_FAMILIES, rng.choice((1, 1, 2)))
        if fams:
            out.append(Sample(obf, 1, "script", g, "+".join(fams)))
        # Obfuscating a statement or two (what fits a command line) is a different regime.
        piece = _script_piece(text, rng)
        obf, fams = _obf(piece, rng, SCRIPT_FAMILIES, rng.choice((1, 2)))
        if fams:
            out.append(Sample(obf, 1, "script", g, "piece:" + "+".join(fams)))
        out.append(Sample(piece, 0, "script", g, "piece"))
        obf, fams = obfuscate(piece, rng, FAMILIES, rng.choice((1, 2, 3)))
        if fams[-1] != "LAUNCHER":
            obf, more = obfuscate(obf, rng, ["LAUNCHER"])
            fams += more
        out.append(Sample(obf, 1, "cmdline", g, "+".join(fams)))
        out.append(Sample(_plain_cmdline(piece, rng), 0, "cmdline", g, "plain"))
        # the same clean statement, only encoded: -EncodedCommand alone is obfuscation too
        # (Invoke-Obfuscation's LAUNCHER), however plain what it hides
        short = "; ".join(x.strip() for x in piece.splitlines() if x.strip())[:rng.choice(
            (40, 200, 2000))]
        out.append(Sample(launcher(short, rng) if rng.random() < 0.3 else " ".join(
            [rng.choice(("powershell", "powershell.exe", "pwsh")), rng.choice(
                ("-enc", "-e", "-EncodedCommand", "-ec")), encode_command(short)]),
            1, "cmdline", g, "piece+ENCODED"))
        # one-line pieces: the launcher's set/$env: and stdin forms (multi-line input gets -enc)
        one = "; ".join(x.strip() for x in piece.splitlines())
        if not re.search(r'["%^&|<>]', one):
            obf, fams = obfuscate(one, rng, ["LAUNCHER"])
            out.append(Sample(obf, 1, "cmdline", g, "one-line+LAUNCHER"))
    with open(data / "unit42_psencmds.jsonl", encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh if line.strip()]
    if limit is not None:
        recs = _cap(recs, lambda r: r.get("family") or "Unknown", limit)
    for r in recs:
        g = "unit42:" + (r.get("family") or "Unknown")
        dec = r.get("decoded") or ""
        out.append(Sample(r["commandline"], 1, "cmdline", g, "unit42-cmdline"))
        if nested_layer(dec):
            EXCLUDED.append((g, nested_layer(dec)))
            continue
        out.append(Sample(dec, 0, "script", g, "plain"))
        if rng.random() < 0.5:
            obf, fams = _obf(dec[:OBF_INPUT_CAP], rng, SCRIPT_FAMILIES, rng.choice((1, 2)))
            if fams:
                out.append(Sample(obf, 1, "script", g, "+".join(fams)))
        if rng.random() < 0.3:
            out.append(Sample(_plain_cmdline(dec, rng), 0, "cmdline", g, "plain"))
    return out


# --- logistic regression, pure Python ---------------------------------------------------------
def fit_logreg(X: list[list[float]], y: list[int], seed: int = 1, epochs: int = 40,
               l2: float = 1e-4, lr: float = 0.1) -> dict:
    """Standardise, then SGD with a decaying step and balanced class weights. Returns the model
    JSON document (see classify.Model)."""
    d = len(X[0])
    n = len(X)
    mean = [sum(r[j] for r in X) / n for j in range(d)]
    scale = [math.sqrt(sum((r[j] - mean[j]) ** 2 for r in X) / n) or 1.0 for j in range(d)]
    Z = [[(r[j] - mean[j]) / scale[j] for j in range(d)] for r in X]
    pos = sum(y)
    cw = {1: n / (2 * max(1, pos)), 0: n / (2 * max(1, n - pos))}
    w = [0.0] * d
    b = 0.0
    rng = random.Random(seed)
    idx = list(range(n))
    step = 0
    for _ in range(epochs):
        rng.shuffle(idx)
        for i in idx:
            step += 1
            eta = lr / (1 + step / n)
            z = b + sum(wj * xj for wj, xj in zip(w, Z[i], strict=True))
            z = max(-30.0, min(30.0, z))
            g = (1 / (1 + math.exp(-z)) - y[i]) * cw[y[i]]
            zi = Z[i]
            for j in range(d):
                w[j] -= eta * (g * zi[j] + l2 * w[j])
            b -= eta * g
    return {"kind": "logistic-regression", "features": list(FEATURE_NAMES), "mean": mean,
            "scale": scale, "weights": w, "bias": b, "threshold": 0.5}


def _features(text: str) -> list[float]:
    """What the classifier sees of ``text`` at inference (analysis.analyse): its features and
    what the deobfuscator undid."""
    from threatscope.powershell.deobfuscate import deobfuscate

    f = extract(text, deobfuscate(text).techniques)
    return [f[nm] for nm in FEATURE_NAMES]


def _featurise(samples: list[Sample]) -> list[list[float]]:
    import multiprocessing

    with multiprocessing.get_context("forkserver").Pool() as pool:
        return pool.map(_features, [s.text for s in samples], chunksize=64)


def fit_model(X: list[list[float]], y: list[int], seed: int = 1, epochs: int = 40,
              kind: str = "gbdt") -> dict:
    """The shipped kind is "gbdt" (see gbdt.py); "logreg" is kept for comparison."""
    if kind == "logreg":
        return fit_logreg(X, y, seed, epochs)
    from threatscope.powershell import gbdt

    return gbdt.fit(X, y, FEATURE_NAMES)


def _score(doc: dict, row: list[float]) -> float:
    if doc.get("kind") == "gbdt":
        from threatscope.powershell import gbdt

        return gbdt.predict_proba(doc, row)
    z = doc["bias"] + sum(w * (x - m) / s for w, x, m, s in
                          zip(doc["weights"], row, doc["mean"], doc["scale"], strict=True))
    return 1 / (1 + math.exp(-max(-60.0, min(60.0, z))))


def _prf(pairs: list[tuple[int, int]]) -> tuple[float, float, float, int, int, int]:
    tp = sum(1 for y, p in pairs if y and p)
    fp = sum(1 for y, p in pairs if not y and p)
    fn = sum(1 for y, p in pairs if y and not p)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1, tp, fp, fn


def folds(samples: list[Sample]) -> list[int]:
    """Fold (0/1) of each sample by source: the two benign repositories apart, Unit42 families
    dealt alternately by size so each half has a similar share."""
    groups: dict[str, int] = {}
    for s in samples:
        if s.group.startswith("unit42:"):
            groups[s.group] = groups.get(s.group, 0) + 1
    fam_fold = {g: i % 2 for i, g in enumerate(sorted(groups, key=lambda g: (-groups[g], g)))}
    out = []
    for s in samples:
        if s.group in fam_fold:
            out.append(fam_fold[s.group])
        else:
            out.append(0 if s.group == "PowerShell/PowerShell" else 1)
    return out


def cross_source(samples: list[Sample], seed: int = 1, epochs: int = 40,
                 kind: str = "gbdt") -> tuple[list[int], list[int]]:
    """Verdict (0/1) on each sample by the model trained on the other fold (see folds): as
    analysis.analyse gives it (the model, or a DECISIVE layer undone), and the model's alone."""
    from threatscope.powershell.analysis import DECISIVE

    X = _featurise(samples)
    decisive = [FEATURE_NAMES.index("tech_" + t.replace("-", "_")) for t in DECISIVE
                if "tech_" + t.replace("-", "_") in FEATURE_NAMES]
    fl = folds(samples)
    model: list[int] = [0] * len(samples)
    for k in (0, 1):
        tr = [i for i in range(len(samples)) if fl[i] != k]
        doc = fit_model([X[i] for i in tr], [samples[i].label for i in tr], seed, epochs, kind)
        for i in range(len(samples)):
            if fl[i] == k:
                model[i] = int(_score(doc, X[i]) >= doc["threshold"])
    shipped = [int(m or any(X[i][j] for j in decisive)) for i, m in enumerate(model)]
    return shipped, model


def prf(pairs: list[tuple[int, int]]) -> tuple[float, float, float, int, int, int]:
    """(precision, recall, F1, tp, fp, fn) of (label, prediction) pairs."""
    return _prf(pairs)


def evaluate(data: Path = DEFAULT_DATA, seed: int = 1, epochs: int = 40,
             out=sys.stdout, kind: str = "gbdt") -> dict:
    """Cross-source evaluation; prints a table and returns the numbers."""
    t0 = time.perf_counter()
    samples = build_dataset(data, seed)
    pred, model = cross_source(samples, seed, epochs, kind)
    res: dict = {}
    print(f"{'subset':44} {'n':>6} {'prec':>7} {'recall':>7} {'F1':>7}   tp/fp/fn", file=out)
    subsets = {
        "scripts (all, unseen sources)": lambda s: s.kind == "script",
        "  benign repos + their obfuscations": lambda s: s.kind == "script"
        and not s.group.startswith("unit42:"),
        "  unit42 payloads (clean) + obfuscated": lambda s: s.kind == "script"
        and s.group.startswith("unit42:"),
        "command lines (all, unseen sources)": lambda s: s.kind == "cmdline",
        "  unit42 -enc command lines vs plain": lambda s: s.kind == "cmdline"
        and s.group.startswith("unit42:"),
    }
    for name, keep in subsets.items():
        pairs = [(s.label, p) for s, p in zip(samples, pred, strict=True) if keep(s)]
        prec, rec, f1, tp, fp, fn = _prf(pairs)
        res[name.strip()] = {"n": len(pairs), "precision": prec, "recall": rec, "f1": f1}
        print(f"{name:44} {len(pairs):>6} {prec:7.4f} {rec:7.4f} {f1:7.4f}   {tp}/{fp}/{fn}",
              file=out)
    for name, kind_ in (("scripts", "script"), ("command lines", "cmdline")):
        prec, rec, f1, *_ = _prf([(s.label, p) for s, p in zip(samples, model, strict=True)
                                  if s.kind == kind_])
        print(f"  {name}, the model alone (no DECISIVE layer): precision {prec:.4f}, recall "
              f"{rec:.4f}, F1 {f1:.4f}", file=out)
    # recall per obfuscation family (first family applied), and false positives by kind
    per: dict[str, list[int]] = {}
    for s, p in zip(samples, pred, strict=True):
        if s.label:
            key = s.how.replace("piece:", "").split("+")[0]
            per.setdefault(key, []).append(p)
    print("recall by (innermost) family: " + ", ".join(
        f"{k} {sum(v) / len(v):.3f} (n={len(v)})" for k, v in sorted(per.items())), file=out)
    fps = [s for s, p in zip(samples, pred, strict=True) if p and not s.label]
    print(f"false positives: {len(fps)} " + str(sorted({(s.kind, s.group) for s in fps})[:8]),
          file=out)
    from collections import Counter

    print(f"decoded payloads left out (a nested obfuscation layer): {len(EXCLUDED)} "
          + str(dict(Counter(r for _, r in EXCLUDED))), file=out)
    print(f"({len(samples)} samples, {time.perf_counter() - t0:.0f} s)", file=out)
    res["_false_positives"] = [(s.kind, s.group, s.text[:120]) for s in fps]
    return res


# Unit42's family labels -> the family the built-in rules over the recovered text name
# (rules/powershell); labels not here have no rule of ours (AMSI bypasses, TXT C2, ...)
UNIT42_FAMILIES = {
    "Shellcode Inject": "shellcode-injector", "Unicorn": "shellcode-injector",
    "Unicorn Modified": "shellcode-injector", "SET": "shellcode-injector",
    "PowerShell Empire": "empire", "Downloader DFSP": "downloader",
    "Downloader DFSP DPL": "downloader", "Downloader DFSP 2X": "downloader",
    "Downloader IEXDS": "downloader", "Downloader Proxy": "downloader",
    "Downloader Kraken": "downloader", "BITSTransfer": "downloader",
    "Powerfun Bind": "powerfun",
    # Unit42 name the wrapper (a 32-bit PowerShell relaunched with a gzipped command); what it
    # runs, once recovered, is Metasploit's shellcode injector (VirtualAlloc, CreateThread)
    "Powerfun Reverse": "shellcode-injector"}


def norm(text: str) -> str:
    """Whitespace runs collapsed, case folded, a leading byte-order mark dropped."""
    return re.sub(r"\s+", " ", text.lstrip("\ufeff")).strip().lower()


def as_unit42_read_it(text: str) -> str:
    """``text`` normalised the way Unit42's ``decoded`` reads: their decoder dropped the NUL
    bytes of UTF-16LE and read the rest as UTF-8, U+FFFD for what is not (U+201D became
    \\x1d); then ``norm``."""
    raw = text.encode("utf-16-le", "surrogatepass").replace(b"\0", b"")
    return norm(raw.decode("utf-8", "replace"))


def recovered_exactly(record: dict, result) -> bool:
    """Whether ``deobfuscate(record["commandline"])`` recovered Unit42's ``decoded`` exactly:
    the layer that -EncodedCommand produced, read as Unit42 read it."""
    enc = [layer.text for layer in result.layers if layer.technique == "encodedcommand"]
    return bool(enc) and as_unit42_read_it(enc[0]) == norm(record["decoded"])


def recovery_and_families(data: Path = DEFAULT_DATA, out=sys.stdout) -> dict:
    """Over Unit42's command lines, as detect sees them (deobfuscated, then the family rules over
    the recovered text): exact recovery of their decoded payloads, and family accuracy on the
    labels UNIT42_FAMILIES maps; prints a summary and returns the numbers."""
    from collections import Counter

    from threatscope.detect.powershell import name_families
    from threatscope.powershell.deobfuscate import deobfuscate

    recs = [json.loads(x) for x in (data / "unit42_psencmds.jsonl").open(encoding="utf-8")
            if x.strip()]
    results = [deobfuscate(r["commandline"]) for r in recs]
    exact = [recovered_exactly(r, res) for r, res in zip(recs, results, strict=True)]
    found = [set(f) for f in name_families([r["commandline"] for r in recs],
                                           [res.final for res in results])]
    per: dict[str, Counter] = {}
    for r, f in zip(recs, found, strict=True):
        want = UNIT42_FAMILIES.get(r.get("family") or "")
        if want:
            per.setdefault(r["family"], Counter())["right" if f == {want} else "wrong"] += 1
    right = sum(c["right"] for c in per.values())
    labelled = sum(c.total() for c in per.values())
    other = Counter(x for r, f in zip(recs, found, strict=True)
                    if not UNIT42_FAMILIES.get(r.get("family") or "") for x in f)
    res = {"records": len(recs), "exact_recovery": sum(exact),
           "exact_recovery_share": sum(exact) / len(recs),
           "unrecovered": [i for i, ok in enumerate(exact) if not ok],
           "family_labelled": labelled, "family_right": right,
           "family_accuracy": right / labelled if labelled else None,
           "family_by_label": {k: dict(v) for k, v in sorted(per.items())},
           "family_on_other_labels": dict(other)}
    print(f"exact recovery of Unit42's decoded payloads: {sum(exact)} of {len(recs)} "
          f"({res['exact_recovery_share']:.4f}); not recovered: records {res['unrecovered']}",
          file=out)
    print(f"family accuracy on the labels with a rule: {right} of {labelled} "
          f"({res['family_accuracy']:.4f}); by label: " + ", ".join(
              f"{k} {v.get('right', 0)}/{v.total()}" for k, v in sorted(per.items())), file=out)
    print(f"families named on records whose label has no rule of ours: {dict(other)}", file=out)
    return res


def train(data: Path = DEFAULT_DATA, out_path: Path | None = None, seed: int = 1,
          epochs: int = 40, kind: str = "gbdt") -> dict:
    """Fit on everything and write the model JSON (default: the package's shipped model)."""
    from threatscope.powershell.classify import MODEL_PATH

    samples = build_dataset(data, seed)
    doc = fit_model(_featurise(samples), [s.label for s in samples], seed, epochs, kind)
    doc["trained_on"] = {"samples": len(samples), "positives": sum(s.label for s in samples),
                         "seed": seed, "epochs": epochs, "data": "shared/data/powershell"}
    path = out_path or MODEL_PATH
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--eval", action="store_true", help="cross-source evaluation table")
    ap.add_argument("--kind", choices=("gbdt", "logreg"), default="gbdt")
    a = ap.parse_args(argv)
    if not (a.data / "manifest.csv").exists():
        print(f"no data at {a.data}", file=sys.stderr)
        return 2
    if a.eval:
        evaluate(a.data, a.seed, a.epochs, kind=a.kind)
        recovery_and_families(a.data)
    else:
        doc = train(a.data, a.out, a.seed, a.epochs, a.kind)
        print(f"model written: {doc['trained_on']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
