"""The field's protocols (issue 23), as pure functions: the union of datasets, the composite's LOSO folds,
cross-dataset pairs, per-dataset pooled metrics and the refusals, with no Ray or MLflow.

The sweeps themselves (Ray, MLflow) are in tests/test_sweep_protocols.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from mer_model.data import load_dataset
from mer_model.data.combine import combine
from mer_model.errors import InputError
from orchestrator.spec import parse_spec
from orchestrator.spec.plan import check_au_supervision, config_hash, grid_configs, sweep_folds
from orchestrator.store import contract as C
from orchestrator.store.contract import FoldRecord
from orchestrator.store.pooled import group_summary

PARTS = [("a", "synthme-casme2", {"n_subjects": 5, "n_clips": 60}),
         ("b", "synthme-samm", {"n_subjects": 4, "n_clips": 50}),
         ("c", "synthme-tiny", {"n_subjects": 3, "n_clips": 40})]


def _spec(scheme="composite", pairs=None, grid=None, **protocol):
    raw = {"dataset": [{"name": n, "label": lab, "setup": "megc3", "knobs": k} for lab, n, k in PARTS],
           "protocol": {"scheme": scheme, **({"pairs": pairs} if pairs else {}), **protocol},
           "grid": grid or [{"name": "GTS-GN"}]}
    return parse_spec(raw, "f.yaml")


def _union(unlabelled: str | None = None):
    parts = []
    for lab, name, knobs in PARTS:
        ds = load_dataset(name, setup="megc3", **knobs)
        if lab == unlabelled:  # a part with no AU labels, as SMIC is
            import dataclasses

            ds = dataclasses.replace(ds, au_labelled=np.zeros(len(ds), bool))
        parts.append(ds)
    return combine(parts, [p[0] for p in PARTS]), parts


def test_union_prefixes_subjects_and_keeps_every_clip_and_label():
    ds, parts = _union()
    assert len(ds) == sum(len(p) for p in parts)
    for (lab, _, _), p in zip(PARTS, parts, strict=True):
        rows = ds.origins == lab
        assert rows.sum() == len(p)
        assert set(ds.subjects[rows]) == {f"{lab}:{s}" for s in p.subjects}
        np.testing.assert_array_equal(ds.labels[rows], p.labels)
        np.testing.assert_array_equal(ds.landmarks[rows], p.landmarks)
        # the AU rows survive the merge of vocabularies, column by column
        for j, au in enumerate(p.au_names):
            np.testing.assert_array_equal(ds.aus[rows, ds.au_names.index(au)], p.aus[:, j])
    # the same subject id in two datasets (s01 in both) is two subjects of the union
    assert len(set(ds.subjects)) == sum(len(set(p.subjects)) for p in parts)


def test_union_refuses_parts_with_different_classes_in_one_line():
    a = load_dataset("synthme-tiny", setup="megc3", n_subjects=2, n_clips=20)
    b = load_dataset("synthme-tiny", setup="objective", n_subjects=2, n_clips=20)
    with pytest.raises(InputError, match=r"^dataset: y \(synthme-tiny, setup objective\) has classes") as e:
        combine([a, b], ["x", "y"])
    assert "\n" not in str(e.value)


def test_composite_folds_leave_one_subject_of_one_dataset_out():
    ds, _ = _union()
    folds = sweep_folds(_spec(), ds)
    assert folds.ids == sorted(set(ds.subjects.tolist()))
    for fid in folds.ids:
        train, test = folds.splits[fid]
        assert set(ds.subjects[test]) == {fid}
        assert fid not in set(ds.subjects[train])  # no subject leakage
        assert len(train) + len(test) == len(ds)
        assert folds.groups[fid] == fid.split(":")[0] == folds.tags(fid)[C.TEST_DATASET]


def test_cross_dataset_default_leaves_one_dataset_out_and_pairs_name_their_split():
    ds, _ = _union()
    folds = sweep_folds(_spec("cross_dataset"), ds)
    assert folds.ids == ["b+c->a", "a+c->b", "a+b->c"]
    for fid in folds.ids:
        train, test = folds.splits[fid]
        tested = folds.groups[fid]
        assert set(ds.origins[test]) == {tested}
        assert tested not in set(ds.origins[train])  # no dataset on both sides ...
        assert not set(ds.subjects[train]) & set(ds.subjects[test])  # ... and so no subject
        assert len(train) + len(test) == len(ds)
    one = sweep_folds(_spec("cross_dataset", pairs=[{"train": ["a"], "test": "c"}]), ds)
    assert one.ids == ["a->c"] and one.tags("a->c") == {C.TEST_DATASET: "c", C.TRAIN_DATASETS: "a"}
    assert set(ds.origins[one.splits["a->c"][0]]) == {"a"}


def test_per_dataset_pooled_metrics_equal_sklearn_on_that_datasets_predictions():
    rng = np.random.default_rng(0)
    groups = {"a:s1": "a", "a:s2": "a", "b:s1": "b", "b:s2": "b", "b:s3": "b"}
    folds = []
    for seed in (0, 1):
        for fid in groups:
            n = int(rng.integers(2, 9))
            t, p = rng.integers(0, 3, n).tolist(), rng.integers(0, 3, n).tolist()
            folds.append(FoldRecord(arm="x", subject=fid, status="complete", run_id="r", seed=seed,
                                    y_true=t, y_pred=p))
    out = group_summary(folds, groups, seeds=[0, 1], num_classes=3)
    for label in ("a", "b"):
        per_seed = []
        for seed in (0, 1):
            part = [f for f in folds if f.seed == seed and groups[f.subject] == label]
            t = np.concatenate([f.y_true for f in part])
            p = np.concatenate([f.y_pred for f in part])
            want = {"accuracy": accuracy_score(t, p),
                    "uf1": f1_score(t, p, average="macro", labels=[0, 1, 2], zero_division=0),
                    "uar": recall_score(t, p, average="macro", labels=[0, 1, 2], zero_division=0)}
            for m, v in want.items():
                assert out[C.dataset_metric(label, f"{m}_seed{seed}")] == pytest.approx(v)
            per_seed.append(want)
        for m in ("accuracy", "uf1", "uar"):
            vals = [w[m] for w in per_seed]
            assert out[C.dataset_metric(label, m)] == pytest.approx(np.mean(vals))
            assert out[C.dataset_metric(label, f"{m}_sd")] == pytest.approx(np.std(vals, ddof=1))


def test_an_au_arm_trained_only_on_a_dataset_without_au_labels_is_refused():
    ds, _ = _union(unlabelled="c")
    aau = [{"name": "full", "au_loss": "aau"}, {"name": "plain", "au_loss": "none"}]
    spec = _spec("cross_dataset", pairs=[{"train": ["c"], "test": "a"}], grid=aau)
    with pytest.raises(InputError, match=r"^f\.yaml: grid arm 'full': au_loss 'aau' but fold 'c->a' has no "
                                         r"training clip with AU labels") as e:
        check_au_supervision(spec, grid_configs(spec), sweep_folds(spec, ds), ds.au_mask)
    assert "\n" not in str(e.value)
    # trained with a labelled dataset beside it: fine (the unlabelled clips train on classification only)
    ok = _spec("cross_dataset", grid=aau)
    check_au_supervision(ok, grid_configs(ok), sweep_folds(ok, ds), ds.au_mask)
    plain = _spec("cross_dataset", pairs=[{"train": ["c"], "test": "a"}], grid=aau[1:])
    check_au_supervision(plain, grid_configs(plain), sweep_folds(plain, ds), ds.au_mask)


@pytest.mark.parametrize("raw, match", [
    ({"protocol": {"scheme": "loso"}}, r"protocol\.scheme: 'loso' with 3 datasets"),
    ({"protocol": {"scheme": "composite", "pairs": [{"train": ["a"], "test": "b"}]}},
     r"protocol\.pairs: only for scheme 'cross_dataset'"),
    ({"protocol": {"scheme": "cross_dataset", "pairs": [{"train": ["a", "b"], "test": "b"}]}},
     r"protocol\.pairs\[0\]: test 'b' is also trained on"),
    ({"protocol": {"scheme": "cross_dataset", "pairs": [{"train": ["a"], "test": "b"},
                                                       {"train": ["c"], "test": "b"}]}},
     r"protocol\.pairs\[1\]: 'b' is tested twice"),
    ({"protocol": {"scheme": "cross_dataset", "subjects": ["a:s1"]}}, r"protocol\.subjects: not with scheme"),
])
def test_protocol_refusals_name_the_key(raw, match):
    base = {"dataset": [{"name": n, "label": lab, "setup": "megc3"} for lab, n, _ in PARTS],
            "grid": [{"name": "x"}]}
    with pytest.raises(InputError, match=r"^f\.yaml: " + match):
        parse_spec({**base, **raw}, "f.yaml")


def test_a_single_dataset_file_keeps_its_sweep_id_and_config_hashes():
    from orchestrator.spec.plan import sweep_id

    raw = {"dataset": {"name": "synthme-tiny"}, "grid": [{"name": "x"}]}
    spec = parse_spec(raw, "f.yaml")
    dumped = spec.model_dump(mode="json")
    assert dumped["dataset"] == {"name": "synthme-tiny", "setup": "objective", "root": None, "seed": 0,
                                 "magnification": 1.0, "cache_dir": None, "knobs": {}}
    assert "pairs" not in dumped["protocol"]
    # the ids this file had before several datasets existed (computed with commit 3b9e615's code): stored
    # sweeps resume and their units are reused
    assert sweep_id(spec, "") == "e861f46d078a"
    assert config_hash(grid_configs(spec)[0].config, spec, "abc") == "13c28a291212"
