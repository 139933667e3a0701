"""How hard is SynthME? Pooled LOSO accuracy / UF1 / UAR of ss_gn and gts_gn+LAM+AAU next to chance.

    python benchmarks/synthme_loso.py                       # both presets, both arms, 60 epochs (our default)
    python benchmarks/synthme_loso.py --epochs 20 --presets synthme-samm --out benchmarks/results/x.json
    python benchmarks/synthme_loso.py --magnification 3     # motion x 3 before detector noise, as the
                                                            # paper's video magnification
    python benchmarks/synthme_loso.py --n-augment 0         # without the paper's augmentation views (the
                                                            # default is 3 since issue 16; older results: 0)

Chance levels: "majority" predicts the most frequent TRAINING class in every fold (accuracy = its share;
UF1/UAR from the same pooled rule), "uniform" is the expectation of a uniformly random guess (accuracy and
UAR = 1/C; UF1 estimated over 200 draws). A linear probe (logistic regression on Procrustes-aligned
apex/offset - onset displacements, same LOSO folds) is a cheap non-graph reference, but not a like-for-like
one: it sees 68 points, the models 14 (``benchmarks/probes.py`` has probes on the models' own input).
Every fold trains from scratch with a fixed epoch count; nothing is selected on the left-out subject.
Results are SynthME numbers: they say nothing about CASME II or SAMM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ARMS = {
    "ss_gn": {"model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"},
    "gts_gn+LAM+AAU": {"model": "gts_gn", "features": "B", "lam": True, "au_loss": "aau", "fusion_layer": 1},
}


def _knobs(views: int) -> dict:
    """SynthME's augmentation knob (the probe and the chance levels never read the views)."""
    return {"n_augment": views} if views else {}


def _fold(args):
    preset, seed, arm, epochs, subject, mag, views = args
    import torch

    torch.set_num_threads(1)
    from mer_model.data import load_dataset
    from mer_model.train import train_fold

    ds = load_dataset(preset, setup="objective", seed=seed, magnification=mag, **_knobs(views))
    _, tr, te = next(s for s in ds.loso_splits() if s[0] == subject)
    cfg = {**ARMS[arm], "epochs": epochs}
    r = train_fold(cfg, ds.subset(tr), ds.subset(te), seed=seed)
    return preset, arm, subject, r.y_true.tolist(), r.y_pred.tolist(), r.train_seconds


def _align(x: np.ndarray) -> np.ndarray:
    """Similarity-align every frame onto its clip's onset (orthogonal Procrustes over 68 points)."""
    out = np.empty_like(x)
    for i in range(len(x)):
        ref = x[i, 0] - x[i, 0].mean(0)
        for f in range(3):
            a = x[i, f] - x[i, f].mean(0)
            u, s, vt = np.linalg.svd(a.T @ ref)
            out[i, f] = (a @ (u @ vt)) * (s.sum() / (a**2).sum())
    return out


def procrustes_displacements(ds) -> np.ndarray:
    """(N, 2 * 68 * 2) apex - onset and offset - onset of all 68 Procrustes-aligned points, in % of the
    onset's eye-centre distance (IOD)."""
    x = _align(ds.landmarks.astype(np.float64))
    iod = np.linalg.norm(x[:, 0, 42:48].mean(1) - x[:, 0, 36:42].mean(1), axis=1)
    return (x[:, 1:] - x[:, :1]).reshape(len(ds), -1) / iod[:, None] * 100  # % of IOD


def loso_logistic(feat: np.ndarray, ds, standardise: bool = False) -> np.ndarray:
    """(N,) LOSO predictions of a logistic regression on ``feat`` (N, F), one fit per fold of ``ds``.

    ``standardise``: a StandardScaler in a Pipeline, so its means and sds come from the training folds
    only (nothing of the left-out subject). lbfgs from zeros: deterministic for given features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.zeros(len(ds), np.int64)
    for _, tr, te in ds.loso_splits():
        clf = LogisticRegression(max_iter=3000)
        model = make_pipeline(StandardScaler(), clf) if standardise else clf
        pred[te] = model.fit(feat[tr], ds.labels[tr]).predict(feat[te])
    return pred


def linear_probe(ds) -> np.ndarray:
    """The original reference: unscaled logistic regression on ``procrustes_displacements`` (68 points)."""
    return loso_logistic(procrustes_displacements(ds), ds)


def chance(ds) -> dict:
    from mer_model.metrics import classification_metrics

    c = ds.num_classes
    maj = np.zeros(len(ds), np.int64)
    for _, tr, te in ds.loso_splits():
        maj[te] = np.bincount(ds.labels[tr], minlength=c).argmax()
    rng = np.random.default_rng(0)
    draws = [classification_metrics(ds.labels, rng.integers(0, c, len(ds)), c) for _ in range(200)]
    m = classification_metrics(ds.labels, maj, c)
    return {"majority": {k: m[k] for k in ("accuracy", "uf1", "uar")},
            "uniform": {"accuracy": 1 / c, "uf1": float(np.mean([d["uf1"] for d in draws])), "uar": 1 / c}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["synthme-casme2", "synthme-samm"])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--magnification", type=float, default=1.0, help="SynthME motion magnification")
    ap.add_argument("--n-augment", type=int, default=3,
                    help="training views per clip, the paper's crop-size augmentation (3: as many as the "
                         "real loaders' crop scales; the paper gives none). Results before issue 16: 0")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/synthme_loso.json"))
    args = ap.parse_args()

    from mer_model.data import load_dataset
    from mer_model.metrics import fold_metrics, pooled_metrics

    report = {"command": " ".join(["python benchmarks/synthme_loso.py", f"--epochs {args.epochs}",
                                   "--presets", *args.presets, "--arms", *args.arms,
                                   "--magnification", str(args.magnification),
                                   "--n-augment", str(args.n_augment)]),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, no GPU",
              "epochs": args.epochs, "seed": args.seed, "magnification": args.magnification,
              "n_augment": args.n_augment, "results": {}}
    jobs = []
    for preset in args.presets:
        ds = load_dataset(preset, setup="objective", seed=args.seed, magnification=args.magnification)
        probe = linear_probe(ds)
        from mer_model.metrics import classification_metrics

        pm = classification_metrics(ds.labels, probe, ds.num_classes)
        report["results"][preset] = {
            "n_clips": len(ds), "n_subjects": len(set(ds.subjects)), "classes": ds.class_counts(),
            "chance": chance(ds), "linear_probe": {k: pm[k] for k in ("accuracy", "uf1", "uar")}, "arms": {}}
        subjects = [s for s, _, _ in ds.loso_splits()]
        jobs += [(preset, args.seed, arm, args.epochs, s, args.magnification, args.n_augment)
                 for arm in args.arms for s in subjects]
    t0 = time.perf_counter()
    folds: dict[tuple[str, str], list] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for i, (preset, arm, subject, yt, yp, secs) in enumerate(pool.map(_fold, jobs), 1):
            folds.setdefault((preset, arm), []).append((np.array(yt), np.array(yp)))
            print(f"[{i}/{len(jobs)}] {preset} {arm} {subject} {secs:.1f}s", flush=True)
    for (preset, arm), fl in folds.items():
        c = len(report["results"][preset]["classes"])
        pooled = pooled_metrics(fl, c)
        report["results"][preset]["arms"][arm] = {
            "pooled": {k: pooled[k] for k in ("accuracy", "uf1", "uar")}, "per_fold": fold_metrics(fl, c),
            "n_folds": len(fl)}
    report["wall_seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out)
    for preset, r in report["results"].items():
        print(f"\n{preset} ({r['n_clips']} clips, {r['n_subjects']} subjects, objective setup), pooled LOSO:")
        rows = [("majority (chance)", r["chance"]["majority"]), ("uniform (chance)", r["chance"]["uniform"]),
                ("linear probe", r["linear_probe"])] + [(a, v["pooled"]) for a, v in r["arms"].items()]
        for name, m in rows:
            print(f"  {name:20s} acc {m['accuracy']:.3f}  uf1 {m['uf1']:.3f}  uar {m['uar']:.3f}")


if __name__ == "__main__":
    main()
