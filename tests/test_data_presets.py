"""SynthME presets of the field's benchmarks (issue 23): subject and class counts against the published
counts (docs/data.md cites each), SMIC's missing AU labels, tiny composite sizes, per-family class setups,
and the first presets kept bit-identical (stored results are keyed by their content hash)."""

import numpy as np
import pytest

from mer_model.data import load_dataset, load_raw
from mer_model.errors import InputError

# content hashes recorded on commit 1df9e06, before the new presets and setups were added: a changed
# hash would orphan every stored result of these presets
HASHES_BEFORE = {
    ("synthme-casme2", "objective"): "5eeb165cea62d53cade09d6457fc6094c31c4a2a9f4495e697f001818135f59d",
    ("synthme-casme2", "objective5"): "372a137ea83e5e4138184538e5fa938eccb1300fd76964f61378a8da3913b4f9",
    ("synthme-casme2", "self5"): "e269b21014cce66dfa596b159fd2cac6c07a39042e46701027d75c2ddc3f8e4d",
    ("synthme-casme2", "megc3"): "71b7df3801798925a790f14400f45aed9c7b2ef523d11b2e355541fb8d9667b7",
    ("synthme-samm", "objective"): "ab0a49b7f153a8579a69cf6f12f23ed02b9fc6c2cef280bdd38e0d18c2691b3f",
    ("synthme-samm", "objective5"): "f0b0f6174bc51cd5da0b39dba9245675319c324cade9c966f91febc4acdb1038",
    ("synthme-samm", "self5"): "4fd9c9a2b460ed87afad5b676cab951e6db99d7e96292c9a461523ba47dd567d",
    ("synthme-samm", "megc3"): "85e607d1bac119a726711e74b4be890aa2ed036d7feb692299698df9cf682473",
    ("synthme-tiny", "objective"): "f8f982afbf1f5acdd02174f1ccff127cd71f403e3e07c7638b4efa4537d48314",
    ("synthme-tiny", "objective5"): "56772ffa1c6806655900b04cce01256b34acd4feca8cdf14e174e8d5ec6de0d2",
    ("synthme-tiny", "self5"): "52a590a42a184e5b1b230247cff8d250f47625408be5ecc87041f86fe1bda519",
    ("synthme-tiny", "megc3"): "e9b8557fdde506f10f470a0033674aa03c5407b49ba8d8de9dae7217a34753d6",
}
HASHES_BEFORE_KNOBS = [
    ("synthme-casme2", "objective", dict(n_augment=2, seed=3, magnification=3),
     "78baac9d6de02be4d0dd9395a13fe364381439c25a57bfa32fdaabbbaf90810d"),
    ("synthme-samm", "objective", dict(n_augment=2, seed=3, magnification=3),
     "036f935e339462fbfcf21cc2de00167d8f18caa97a2d266c4c37536af3e5010d"),
    ("synthme-casme2", "megc3", dict(n_subjects=4, n_clips=40, seed=2),
     "14b2f0c1722886f8c1b0bb30d4d0eaeb7a78e184750164c36f99b2a304156482"),
    ("synthme-samm", "megc3", dict(n_subjects=5, n_clips=20, seed=1, noise=0.003),
     "197853ce28f3d73aa5905e13b466f354cd2609edc7e1e0ee0154ae1d844d124c"),
    ("synthme-tiny", "megc3", dict(seed=7, n_augment=1),
     "afe27e73a1133282bf049fefa66d06d553ee853bcfcc1651d071d5988478c855"),
]


@pytest.mark.parametrize("key", sorted(HASHES_BEFORE))
def test_first_presets_are_bit_identical(key):
    name, setup = key
    ds = load_dataset(name, setup=setup)
    assert ds.content_hash() == HASHES_BEFORE[key]
    assert ds.au_labelled is None  # CASME II / SAMM presets: every clip labelled, nothing added to the hash


@pytest.mark.parametrize("name, setup, knobs, expected", HASHES_BEFORE_KNOBS)
def test_first_presets_with_knobs_are_bit_identical(name, setup, knobs, expected):
    assert load_dataset(name, setup=setup, **knobs).content_hash() == expected


# MEGC2019 composite under megc3 (See et al. 2019; docs/data.md): (subjects, negative, positive, surprise)
MEGC_PARTS = {
    "synthme-smic": (16, 70, 51, 43),
    "synthme-megc-casme2": (24, 88, 32, 25),
    "synthme-megc-samm": (28, 92, 26, 15),
}


@pytest.mark.parametrize("name", sorted(MEGC_PARTS))
def test_composite_parts_match_the_published_counts_exactly(name):
    subjects, neg, pos, sur = MEGC_PARTS[name]
    ds = load_dataset(name, setup="megc3")
    assert ds.class_names == ("negative", "positive", "surprise")
    assert ds.class_counts() == {"negative": neg, "positive": pos, "surprise": sur}
    assert len(set(ds.subjects)) == subjects and len(set(ds.clips)) == len(ds)
    assert ds.meta["n_dropped_by_setup"] == 0  # every clip of a composite part is a megc3 clip


def test_composite_totals():
    parts = [load_dataset(n, setup="megc3") for n in MEGC_PARTS]
    assert sum(len(p) for p in parts) == 442
    assert sum(len(set(p.subjects)) for p in parts) == 68


def test_smic_preset_has_no_au_labels():
    raw = load_raw("synthme-smic")
    assert raw.family == "smic" and raw.au_numbers == ()
    assert all(a == frozenset() for a in raw.aus)
    assert raw.au_labelled.dtype == bool and not raw.au_labelled.any()
    ds = load_dataset("synthme-smic", setup="megc3")
    assert ds.aus.shape == (164, 0) and ds.au_names == ()
    assert not ds.au_mask.any() and len(ds.au_labelled) == len(ds)
    # the AUs drawn inside still move the face: the label is learnable from the motion
    move = np.abs(ds.landmarks[:, 1] - ds.landmarks[:, 0]).mean()
    still = load_dataset("synthme-smic", setup="megc3", amplitude=0.0, noise=0.0, pose=0.0)
    assert move > 0.3 and np.abs(still.landmarks[:, 1] - still.landmarks[:, 0]).max() < 1e-3
    # its au_labelled enters the hash (clips without AU labels are not clips with an empty label)
    sub = ds.subset(np.arange(10))
    assert not sub.au_labelled.any() and len(sub.au_labelled) == 10


def test_smic_setups_other_than_megc3_are_refused_in_one_line():
    for setup in ("objective", "objective5", "self5", "emotion4", "emotion7"):
        with pytest.raises(InputError) as err:
            load_dataset("synthme-smic", setup=setup)
        msg = str(err.value)
        assert "\n" not in msg and "smic" in msg and "megc3" in msg
    with pytest.raises(InputError, match="no AU labels"):
        load_dataset("synthme-smic", setup="objective")


def test_casme3_preset_matches_the_released_label_file():
    # cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx: 860 rows, 94 subjects; emotion and objective-class counts
    raw = load_raw("synthme-casme3")
    assert len(raw.clips) == 860 and len(set(raw.subjects)) == 94
    e7 = load_dataset("synthme-casme3", setup="emotion7").class_counts()
    assert e7 == {"happiness": 55, "disgust": 250, "fear": 86, "anger": 64, "sadness": 57, "surprise": 187,
                  "others": 161}
    assert load_dataset("synthme-casme3", setup="emotion4").class_counts() == {
        "negative": 457, "positive": 55, "surprise": 187, "others": 161}
    assert load_dataset("synthme-casme3", setup="megc3").class_counts() == {
        "negative": 457, "positive": 55, "surprise": 187}
    assert load_dataset("synthme-casme3", setup="objective").class_counts() == {
        "I": 15, "II": 151, "III": 234, "IV": 37, "V": 47, "VII": 373}
    with pytest.raises(InputError, match="self5"):
        load_dataset("synthme-casme3", setup="self5")


def test_mmew_preset_matches_the_published_counts():
    raw = load_raw("synthme-mmew")
    assert len(raw.clips) == 300 and len(set(raw.subjects)) == 36
    assert load_dataset("synthme-mmew", setup="emotion7").class_counts() == {
        "happiness": 36, "surprise": 89, "anger": 8, "disgust": 72, "fear": 16, "sadness": 13, "others": 66}
    assert load_dataset("synthme-mmew", setup="megc3").class_counts() == {
        "negative": 109, "positive": 36, "surprise": 89}
    assert load_raw("synthme-mmew").au_labelled is None  # MMEW has FACS codes
    for setup in ("objective", "emotion4", "self5"):
        with pytest.raises(InputError, match="mmew"):
            load_dataset("synthme-mmew", setup=setup)


@pytest.mark.parametrize("name", sorted(MEGC_PARTS))
@pytest.mark.parametrize("per_subject", [2, 3])
def test_tiny_composite_sizes_keep_every_subject_and_class(name, per_subject):
    subjects = MEGC_PARTS[name][0]
    for seed in range(3):
        ds = load_dataset(name, setup="megc3", n_subjects=subjects, n_clips=per_subject * subjects, seed=seed)
        assert len(ds) == per_subject * subjects
        assert len(set(ds.subjects)) == subjects
        assert min(ds.class_counts().values()) >= 2


def test_pair_presets_are_deterministic_and_objective_follows_the_aus():
    from mer_model.data import objective_class

    a = load_raw("synthme-casme3", seed=5)
    b = load_raw("synthme-casme3", seed=5)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert list(a.emotion) == list(b.emotion)
    assert not np.array_equal(a.landmarks, load_raw("synthme-casme3", seed=6).landmarks)
    assert all(objective_class(s) == c for s, c in zip(a.aus, a.objective, strict=True))
