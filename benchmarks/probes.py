"""Like-for-like reference probes for SynthME: what a linear model gets from exactly what the GCNs see.

    python benchmarks/probes.py                                  # synthme-casme2, magnification 3 and 1
    python benchmarks/probes.py --presets synthme-samm --magnifications 3 --out /tmp/p.json

``synthme_loso.linear_probe`` sees all 68 points, Procrustes-aligned per clip, as displacements; the models
see 14 points (``point_set(14)``) after ``features.normalise`` (onset centroid and outer-eye-corner
distance, no rotation) as absolute coordinates of the three frames. The probes here (same LOSO folds,
logistic regression behind a StandardScaler fitted on the training folds only):

    a  68 points, Procrustes, displacement (the original probe's features, now standardised)
    b  14 points, the models' normalisation, absolute (x, y) of onset / apex / offset (the models' input)
    c  14 points, the models' normalisation, displacement (apex - onset, offset - onset)
    d  68 points, the models' normalisation, absolute
    e  68 points, the models' normalisation, displacement

plus the original probe unchanged (no scaler) as a check against ``synthme_loso.py``'s figure. Each probe
is deterministic (lbfgs from zeros on fixed features), so one run per data seed says all; the data seed
is SynthME's 0, as in ``synthme_loso.py``. Also reported: the clips whose active AUs all leave the 14
points still in SynthME's templates (``silent_clips``), which no 14-point input can tell apart from
their motion. Results are SynthME numbers: they say nothing about CASME II or SAMM.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling script, also when imported by tests
from synthme_loso import chance, linear_probe, loso_logistic, procrustes_displacements  # noqa: E402

PROBES: dict[str, str] = {
    "a": "68 points, Procrustes, displacement (% IOD)",
    "b": "14 points, models' normalisation, absolute",
    "c": "14 points, models' normalisation, displacement",
    "d": "68 points, models' normalisation, absolute",
    "e": "68 points, models' normalisation, displacement",
}


def model_view(landmarks: np.ndarray, points: int) -> np.ndarray:
    """(N, 3, V, 2) float64: ``features.normalise`` then the ``point_set(points)`` nodes, i.e. the Type A
    input of the models before the (N, C, T, V) permute. Per clip only: nothing crosses samples."""
    import torch

    from mer_model.features import normalise
    from mer_model.landmarks import point_set

    x = normalise(torch.from_numpy(np.asarray(landmarks, dtype=np.float64)))
    return x[:, :, list(point_set(points).indices)].numpy()


def absolute_features(landmarks: np.ndarray, points: int) -> np.ndarray:
    """(N, 3 * V * 2): the normalised coordinates of all three frames, flattened."""
    x = model_view(landmarks, points)
    return x.reshape(len(x), -1)


def displacement_features(landmarks: np.ndarray, points: int) -> np.ndarray:
    """(N, 2 * V * 2): apex - onset and offset - onset of the normalised coordinates (IOD units)."""
    x = model_view(landmarks, points)
    return (x[:, 1:] - x[:, :1]).reshape(len(x), -1)


def probe_features(ds, key: str) -> np.ndarray:
    """Features of probe ``key`` (see ``PROBES``) for every clip of ``ds``."""
    if key == "a":
        return procrustes_displacements(ds)
    points = 14 if key in "bc" else 68
    make = absolute_features if key in "bd" else displacement_features
    return make(ds.landmarks, points)


def silent_aus(points: int = 14) -> tuple[int, ...]:
    """SynthME AUs whose displacement template moves none of the ``point_set(points)`` nodes."""
    from mer_model.data.synthme import AU_NUMBERS, au_templates
    from mer_model.landmarks import point_set

    idx = list(point_set(points).indices)
    templates = au_templates()
    return tuple(a for a in AU_NUMBERS if not (np.linalg.norm(templates[a][idx], axis=1) > 0).any())


def silent_clips(aus: np.ndarray, au_names: tuple[str, ...], points: int = 14) -> np.ndarray:
    """(N,) bool: clips whose every active AU is in ``silent_aus(points)``.

    aus: (N, A) multi-hot with columns ``au_names`` (``au_name(n)`` of SynthME's ``AU_NUMBERS``). A clip
    with no active AU counts as silent (nothing moves); SynthME draws none.
    """
    from mer_model.data.au import au_name

    silent = {au_name(a) for a in silent_aus(points)}
    loud_cols = np.array([name not in silent for name in au_names])
    return ~(np.asarray(aus)[:, loud_cols] > 0).any(axis=1)


def run_probe(ds, key: str | None) -> dict:
    """Pooled LOSO accuracy / UF1 / UAR of one probe (``None``: the original, unscaled), its accuracy on
    the silent clips, its feature count, how many fold fits hit lbfgs' iteration limit and the (N,)
    clip-level predictions."""
    from sklearn.exceptions import ConvergenceWarning

    from mer_model.metrics import classification_metrics

    feat = procrustes_displacements(ds) if key is None else probe_features(ds, key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pred = linear_probe(ds) if key is None else loso_logistic(feat, ds, standardise=True)
    m = classification_metrics(ds.labels, pred, ds.num_classes)
    silent = silent_clips(ds.aus, ds.au_names)
    return {"features": "68 points, Procrustes, displacement, no scaler (synthme_loso.py)" if key is None
            else PROBES[key], "n_features": int(feat.shape[1]),
            "pooled": {k: m[k] for k in ("accuracy", "uf1", "uar")},
            "accuracy_on_silent_clips": float((pred[silent] == ds.labels[silent]).mean()),
            "fits_not_converged": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
            "y_pred": pred.tolist()}


#: (arm, baseline) pairs whose pooled-UF1 difference gets a subject-bootstrap interval
COMPARISONS = (("b", "original"), ("c", "b"), ("d", "b"), ("e", "c"), ("a", "original"))


def compare(ds, results: dict) -> dict:
    """Paired subject-bootstrap 95 % CI (5000 resamples, whole subjects) of the pooled-UF1 difference of
    each ``COMPARISONS`` pair, from the probes' clip-level predictions (``orchestrator.report.stats``).
    The probes are deterministic, so this interval is the only noise there is for one data seed."""
    import pandas as pd

    from orchestrator.report.stats import bootstrap_pooled_diff, subject_confusions

    subjects = sorted(set(ds.subjects.tolist()))

    def conf(key: str) -> np.ndarray:
        pred = pd.DataFrame({"seed": 0, "subject": ds.subjects, "y_true": ds.labels,
                             "y_pred": results[key]["y_pred"]})
        return subject_confusions(pred, subjects, [0], ds.num_classes)

    out = {}
    for arm, base in COMPARISONS:
        d, lo, hi = bootstrap_pooled_diff(conf(arm), conf(base), "uf1")
        out[f"{arm} - {base}"] = {"uf1_diff": d, "ci95": [lo, hi], "excludes_0": bool(lo > 0 or hi < 0)}
    return out


def silent_report(ds) -> dict:
    """How many clips no 14-point input can see move, with their AU sets and classes."""
    mask = silent_clips(ds.aus, ds.au_names)
    combos = Counter("+".join(n for n, v in zip(ds.au_names, row, strict=True) if v) for row in ds.aus[mask])
    classes = Counter(ds.class_names[c] for c in ds.labels[mask])
    return {"silent_aus": [f"AU{a}" for a in silent_aus()], "n_silent_clips": int(mask.sum()),
            "n_clips": len(ds), "share": float(mask.mean()), "au_sets": dict(combos),
            "classes": dict(classes)}


def machine() -> str:
    """``nproc`` and the CPU model name, as BENCHMARKS.md asks."""
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or platform.machine())
    return f"{cpu}, nproc {nproc}, no GPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["synthme-casme2"])
    ap.add_argument("--magnifications", nargs="+", type=float, default=[3.0, 1.0])
    ap.add_argument("--seed", type=int, default=0, help="SynthME data seed (the probes are deterministic)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/probes.json"))
    args = ap.parse_args()

    from mer_model.data import load_dataset

    report = {"command": " ".join(["python benchmarks/probes.py", "--presets", *args.presets,
                                   "--magnifications", *map(str, args.magnifications),
                                   "--seed", str(args.seed)]),
              "machine": machine(), "seed": args.seed, "setup": "objective", "deterministic": True,
              "metrics": "pooled over LOSO folds", "probes": PROBES, "results": {}}
    for preset in args.presets:
        for mag in args.magnifications:
            ds = load_dataset(preset, setup="objective", seed=args.seed, magnification=mag)
            r = {"n_clips": len(ds), "n_subjects": len(set(ds.subjects)), "chance": chance(ds),
                 "original": run_probe(ds, None), **{k: run_probe(ds, k) for k in PROBES},
                 "silent": silent_report(ds)}
            r["uf1_differences"] = compare(ds, r)
            report["results"][f"{preset} magnification {mag:g}"] = r
            _print(f"{preset} magnification {mag:g}", r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out)


def _print(title: str, r: dict) -> None:
    print(f"\n{title} ({r['n_clips']} clips, {r['n_subjects']} subjects, objective), pooled LOSO:")
    rows = [("majority (chance)", r["chance"]["majority"]), ("uniform (chance)", r["chance"]["uniform"]),
            ("original probe", r["original"]["pooled"])]
    rows += [(f"{k}: {PROBES[k]}", r[k]["pooled"]) for k in PROBES]
    for name, m in rows:
        print(f"  {name:50s} acc {m['accuracy']:.3f}  uf1 {m['uf1']:.3f}  uar {m['uar']:.3f}")
    s = r["silent"]
    for name, c in r["uf1_differences"].items():
        print(f"  UF1 {name:14s} {c['uf1_diff']:+.3f}  95% CI [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]")
    print(f"  silent to 14 points: {s['n_silent_clips']}/{s['n_clips']} = {s['share']:.1%} "
          f"({', '.join(s['silent_aus'])}; {s['au_sets']})")


if __name__ == "__main__":
    main()
