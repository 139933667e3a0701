"""The report's methods paragraph, generated from the sweep's ``spec.yaml`` and its records.

It states what a reader needs to rerun the sweep: protocol, subjects, seeds, epochs, optimiser and its
settings, augmentation, magnification, how anything was selected, and the environment record (the sweep
run's ``environment.json`` artifact, when it has one). Training settings the paper does not give
(optimiser, learning rate, weight decay, batch size, epochs) are called this project's choices; the
magnification factor 3 is the paper's ("following the setup in [9]"). No machine path is written: the
paragraph names files by their base name only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mer_model.config import TRAINING_DEFAULTS
from mer_model.data.dataset import is_synthetic


def _seeds(protocol: dict[str, Any]) -> str:
    seeds = protocol.get("seeds")
    if seeds:
        seeds = list(seeds)
        return (f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}) per fold; tables give the "
                "mean ± sd over seeds")
    return f"one training seed per fold (seed {protocol.get('seed', 0)})"


_OPTIMISERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}


def _training(train: dict[str, Any]) -> str:
    t = {**TRAINING_DEFAULTS, **train}
    opt = str(t["optimizer"])
    return (
        f"Every fold trains for a fixed {t['epochs']} epochs with {_OPTIMISERS.get(opt, opt)} "
        f"(learning rate {t['lr']:g}, weight decay {t['weight_decay']:g}, batch size {t['batch_size']}); "
        "these are our choices: the paper gives no optimiser, learning rate, weight decay, batch size or "
        "epoch count."
    )


def _data(dataset: dict[str, Any], name: str) -> str:
    mag = float(dataset.get("magnification", 1.0))
    synth = is_synthetic(name)
    if mag == 1.0:
        mag_txt = ("Motion is not magnified (factor 1; the paper magnifies by 3, following the setup in its "
                   "[9]).")
    else:
        how = ("applied to the landmark motion before detector noise" if synth
               else "applied to the detected landmarks, x_onset + a (x - x_onset)")
        mag_txt = (f"Motion is magnified by {mag:g} ({how}); the paper magnifies its videos by 3, "
                   "following the setup in its [9].")
    n_aug = int((dataset.get("knobs") or {}).get("n_augment", 0) or 0)
    if synth:
        aug = (f"{n_aug} extra training views per clip (re-noised like crop-size re-detections)" if n_aug
               else "no augmentation")
    else:
        aug = "the crop-size re-detection views of the landmark cache, when extracted with them"
    if n_aug or not synth:
        return (f"{mag_txt} Augmentation: {aug}, for training subjects only; test subjects are never "
                "augmented.")
    return f"{mag_txt} No augmentation."


def _selection(spec: dict[str, Any], objective: str) -> str:
    grid, search = spec.get("grid") or [], spec.get("search")
    parts = []
    if grid:
        parts.append("Grid arms involve no selection: the model after the last epoch predicts the left-out "
                     "subject.")
    if search:
        parts.append(_search_sentence(search, objective))
    return " ".join(parts)


def _search_sentence(search: dict[str, Any], objective: str) -> str:
    """How the search selected (issue 13): on the test subjects (optimistic) or nested."""
    params = ", ".join(sorted((search.get("params") or {}).keys()))
    head = f"The Optuna search ({search.get('sampler', 'tpe')} sampler, {search.get('n_trials')} trials)"
    if search.get("selection") != "nested":
        return (f"{head} chose {params} by the pooled {objective} over the LOSO folds of the same subjects "
                "it reports: its best trial is selected on the test subjects, optimistic (not nested).")
    inner = search.get("inner") or {}
    split = "LOSO" if inner.get("scheme") == "loso" else f"grouped {inner.get('k', 5)}-fold"
    return (f"{head} was nested: for every outer subject its own study chose {params} by the pooled "
            f"{objective} over a {split} split (by subject) of the other subjects only; the chosen params "
            "were retrained on all of them (every seed) and tested once on the outer subject. The nested "
            f"LOSO estimate is the {objective} pooled over those outer test predictions (mean over seeds); "
            "the outer subject took no part in its own selection.")


# What each option the paper does not have does (mer_model.config EXTENSION_DEFAULTS; issue 16).
NON_PAPER_TEXT: dict[tuple[str, str], str] = {
    ("input", "onset_delta"): "onset-relative input (each frame minus the onset frame)",
    ("input", "onset_delta_shape"): "onset-relative input with the onset shape kept as extra channels",
    ("align", "procrustes"): "each clip rotated so its onset best matches a fixed frontal face (2-D "
                             "Procrustes, rotation only)",
    ("aau_weighting", "frozen"): "AAU weights W frozen at their initial ones (equal shares 1/N_L; a control)",
    ("aau_weighting", "sum"): "the unweighted sum of the layer AU losses of Eq. (9), which the paper writes "
                              "but evaluates in no arm, in place of Eq. (11) (a control)",
    ("aau_weighting", "uncertainty"): "homoscedastic-uncertainty weighting of the AAU layer losses (Kendall "
                                      "et al. 2018; shares exp(-s_r) / Σ exp(-s)) in place of Eq. (11)",
}


def non_paper_sentence(options: Mapping[str, Sequence[str]] | None) -> str:
    """One sentence naming every option not in the paper that some arm uses (``tables.non_paper_options``),
    each called ours; empty when every arm is a paper model."""
    if not options:
        return ""
    items = [f"`{k} = {v}`: {NON_PAPER_TEXT.get((k, v), 'an option')} (ours, not in the paper)"
             for k, vs in options.items() for v in vs]
    return ("Some arms use options that are not in the paper, marked ‡ in the tables: " + "; ".join(items)
            + "; every other arm is the paper's model.")


def environment_text(env: dict[str, Any] | None) -> str:
    """One sentence from ``environment.json``: its scalar entries, machine paths left out."""
    if not env:
        return "The sweep run carries no environment record (`environment.json`)."
    if isinstance(env.get("project"), dict):  # the record orchestrator.store.environment writes
        from orchestrator.store.environment import summary_lines

        return "Environment (the sweep's `environment.json`): " + "; ".join(summary_lines(env)) + "."
    items = []
    for k, v in env.items():
        if isinstance(v, dict):
            v = _first([f"{a} {b}" for a, b in v.items() if not _is_path(b)])
        if isinstance(v, list):
            v = _first([str(x) for x in v if not _is_path(x)])
        if v in (None, "") or _is_path(v):
            continue
        items.append(f"{k}: {v}")
    return "Environment (the sweep's `environment.json`): " + "; ".join(items) + "."


def _first(entries: list[str], n: int = 12) -> str:
    """At most ``n`` entries (a full package list would drown the paragraph; the artifact has them all)."""
    more = f", … ({len(entries) - n} more in environment.json)" if len(entries) > n else ""
    return ", ".join(entries[:n]) + more


def _is_path(v: Any) -> bool:
    s = str(v)
    return s.startswith(("/", "~")) or (len(s) > 2 and s[1] == ":" and s[2] in "\\/")


def methods_paragraph(
    spec: dict[str, Any] | None,
    *,
    dataset: str,
    setup: str | None,
    n_subjects: int,
    objective: str,
    environment: dict[str, Any] | None,
    non_paper: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The paragraph (Markdown, one block). ``spec``: the sweep's parsed spec.yaml (None when absent).
    ``non_paper``: the options not in the paper that arms use (``tables.non_paper_options``)."""
    if spec is None:
        return ("The sweep run has no readable spec.yaml: its protocol, training settings and selection "
                "cannot be stated here. " + " ".join(x for x in (non_paper_sentence(non_paper),
                                                                 environment_text(environment)) if x))
    protocol, ds = spec.get("protocol") or {}, spec.get("dataset") or {}
    parts = ds if isinstance(ds, list) else [ds]
    lines = [
        _protocol(protocol, parts, dataset, setup, n_subjects),
        _training(spec.get("train") or {}),
        _data_of(parts, dataset),
        _selection(spec, objective),
        non_paper_sentence(non_paper),
        ("Metrics are pooled over every fold's predictions, on the whole and on each dataset's folds, "
         "and reported apart from per-fold means." if len(parts) > 1 else
         "Metrics are pooled over the LOSO folds (the field's convention) and reported apart from per-fold "
         "means."),
        environment_text(environment),
    ]
    return " ".join(x for x in lines if x)


def _label(d: dict[str, Any]) -> str:
    return str(d.get("label") or d.get("name", "?"))


def _protocol(protocol: dict[str, Any], parts: list[dict[str, Any]], dataset: str, setup: str | None,
              n_folds: int) -> str:
    """The evaluation protocol in one sentence: LOSO, the composite, or cross-dataset pairs."""
    scheme, labels = protocol.get("scheme", "loso"), ", ".join(_label(d) for d in parts)
    classes = f", class setup `{setup}`" if setup else ""
    if scheme == "composite":
        return (f"Composite LOSO (the MEGC2019 protocol) over the union of {labels}{classes}: {n_folds} "
                "folds, each leaving out one subject of one dataset (subjects are prefixed by their "
                "dataset, so no two datasets share one) and training on every other subject of every "
                f"dataset; {_seeds(protocol)}. Clips without AU labels (SMIC has none) train on the "
                "classification loss only: the AU losses are masked for them.")
    if scheme == "cross_dataset":
        how = ("the pairs the file lists" if protocol.get("pairs")
               else "leave one dataset out: each dataset tested after training on all the others")
        return (f"Cross-dataset evaluation over {labels}{classes}: {n_folds} units, each training on whole "
                f"datasets and testing on another ({how}); no dataset, and so no subject, is on both "
                f"sides; {_seeds(protocol)}.")
    return (f"Leave-one-subject-out (LOSO) on {dataset}{classes}: {n_folds} folds, each training on all "
            f"other subjects and testing on one; {_seeds(protocol)}.")


def _data_of(parts: list[dict[str, Any]], dataset: str) -> str:
    """``_data`` of the one dataset, or of each part of a union (once when they agree)."""
    texts = [_data(d, str(d.get("name", dataset))) for d in parts]
    if len(set(texts)) == 1:
        return texts[0]
    return " ".join(f"{_label(d)}: {t}" for d, t in zip(parts, texts, strict=True))


def parse_environment(text: str | None) -> dict[str, Any] | None:
    """``environment.json`` text -> dict (None when absent or not a JSON object)."""
    if not text:
        return None
    try:
        env = json.loads(text)
    except json.JSONDecodeError:
        return None
    return env if isinstance(env, dict) else None
