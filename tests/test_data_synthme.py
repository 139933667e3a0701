"""SynthME: preset sizes and class imbalance, determinism, FACS templates, LOSO splits, setups."""

import time

import numpy as np
import pytest

from mer_model.data import load_dataset, load_raw, objective_class
from mer_model.data.raw import magnify
from mer_model.data.synthme import AU_NUMBERS, au_templates, generate
from mer_model.errors import InputError

# CASME II / SAMM objective-class counts (MEGC2018 labels): the presets must reproduce this imbalance
CASME2_COUNTS = {"I": 25, "II": 15, "III": 99, "IV": 26, "V": 20, "VI": 1, "VII": 69}
SAMM_COUNTS = {"I": 24, "II": 13, "III": 20, "IV": 8, "V": 3, "VI": 7, "VII": 84}


@pytest.mark.parametrize(
    "name, n_subj, n_clips, counts, kept",
    [
        ("synthme-casme2", 26, 255, CASME2_COUNTS, ("I", "II", "III", "IV", "V", "VII")),
        ("synthme-samm", 32, 159, SAMM_COUNTS, ("I", "II", "III", "VII")),
    ],
)
def test_presets_mirror_real_sizes_and_imbalance(name, n_subj, n_clips, counts, kept):
    raw = load_raw(name)
    assert raw.landmarks.shape == (n_clips, 3, 68, 2)
    assert len(set(raw.subjects)) == n_subj
    assert len(set(raw.clips)) == n_clips
    got = {c: int((raw.objective == c).sum()) for c in counts}
    assert got == counts
    ds = load_dataset(name, setup="objective")
    assert ds.class_names == kept  # classes with < 10 clips dropped (paper: 6 for CASME II, 4 for SAMM)
    assert ds.class_counts() == {c: counts[c] for c in kept}
    assert ds.landmarks.dtype == np.float32 and ds.labels.dtype == np.int64
    assert ds.aus.shape == (len(ds), len(ds.au_names))
    assert ds.meta["dataset"] == name and ds.meta["seed"] == 0


def test_objective_class_is_derived_from_the_aus():
    raw = load_raw("synthme-casme2")
    assert all(objective_class(a) == c for a, c in zip(raw.aus, raw.objective, strict=True))
    # self-report agrees with the class's usual emotion only most of the time
    happy = raw.emotion[raw.objective == "I"]
    assert 0.5 < np.mean(happy == "happiness") < 1.0


def test_generation_is_fast_and_deterministic():
    t = time.perf_counter()
    a = load_dataset("synthme-casme2", setup="objective", seed=3)
    assert time.perf_counter() - t < 1.0
    b = load_dataset("synthme-casme2", setup="objective", seed=3)
    c = load_dataset("synthme-casme2", setup="objective", seed=4)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.landmarks, c.landmarks)
    # augmentation views come from their own generator: asking for them leaves the base data unchanged
    d = load_dataset("synthme-casme2", setup="objective", seed=3, n_augment=2)
    np.testing.assert_array_equal(a.landmarks, d.landmarks)
    assert a.augment is None and d.augment.shape == (len(d), 2, 3, 68, 2)


def _face_frame(x):
    """(N, 3, 68, 2) points relative to the nose-bridge top (point 27, which no AU moves) in units of the
    onset's inter-ocular distance (y down). (Eye centres move with AU5/6/7.)"""
    onset = x[:, :1]
    iod = np.linalg.norm(onset[..., 42:48, :].mean(-2) - onset[..., 36:42, :].mean(-2), axis=-1)
    return (x - x[..., 27:28, :]) / iod[..., None, None]


def test_au_templates_follow_facs():
    t = au_templates()
    # AU12 lifts the lip corners (y up = negative) and pulls them outwards
    assert t[12][48, 1] < -0.5 and t[12][54, 1] < -0.5
    assert t[12][48, 0] < 0 < t[12][54, 0]
    # AU4 lowers the brows and draws the inner brows together
    assert (t[4][17:27, 1] > 0).all()
    assert t[4][21, 0] > 0 > t[4][22, 0]
    # AU15 pulls the corners down, AU1 raises the inner brow more than the outer
    assert t[15][48, 1] > 0.5 and t[15][54, 1] > 0.5
    assert t[1][21, 1] < t[1][17, 1] <= 0
    assert set(t) == set(AU_NUMBERS)


def test_generated_apex_moves_the_right_landmarks():
    raw = generate("synthme-casme2", seed=1, noise=0.0, pose=0.0)
    f = _face_frame(raw.landmarks.astype(np.float64))
    move = f[:, 1] - f[:, 0]  # apex - onset, IOD units
    au12 = np.array([12 in a and 15 not in a for a in raw.aus])
    au4 = np.array([4 in a and 1 not in a and 2 not in a for a in raw.aus])
    none12 = np.array([not (a & {10, 12, 14, 15, 17, 20, 23, 24, 25, 26}) for a in raw.aus])
    assert au12.sum() >= 10 and au4.sum() >= 30
    corners_dy = move[:, [48, 54], 1].mean(1)
    assert (corners_dy[au12] < -0.001).all()  # lip corners rise
    assert np.abs(corners_dy[none12]).max() < 1e-3  # and do not move without a mouth AU
    brows_dy = move[:, 17:27, 1].mean(1)
    assert (brows_dy[au4] > 0.001).all()  # brows go down
    # micro amplitude: the largest apex shift is ~1-3 % of the inter-ocular distance (AU sums can exceed)
    peak = np.linalg.norm(move, axis=-1).max(1)
    assert 0.005 < np.median(peak) < 0.04


def test_noise_is_comparable_to_the_motion():
    raw = generate("synthme-casme2", seed=0)
    clean = generate("synthme-casme2", seed=0, noise=0.0)
    f, g = _face_frame(raw.landmarks.astype(np.float64)), _face_frame(clean.landmarks.astype(np.float64))
    noise_sd = (f - g).std()
    motion = np.linalg.norm(g[:, 1] - g[:, 0], axis=-1).max(1)
    assert 0.3 < np.median(motion) / noise_sd < 10  # neither buried nor trivially separable


@pytest.mark.parametrize("name", ["synthme-casme2", "synthme-samm", "synthme-tiny"])
def test_loso_splits_never_share_a_subject(name):
    ds = load_dataset(name, setup="objective")
    splits = ds.loso_splits()
    assert [s for s, _, _ in splits] == sorted(set(ds.subjects))
    covered = np.concatenate([te for _, _, te in splits])
    assert sorted(covered.tolist()) == list(range(len(ds)))  # every clip tested exactly once
    for subject, train, test in splits:
        assert set(ds.subjects[test]) == {subject}
        assert subject not in set(ds.subjects[train])
        assert len(np.intersect1d(train, test)) == 0
        sub = ds.subset(train)
        assert sub.class_names == ds.class_names and len(sub) == len(train)


def test_magnification_scales_the_motion_not_the_detector_noise():
    """SynthME magnifies like the paper's video magnification: motion x a before the detector, so the
    onset-relative motion triples at a = 3 while the noise draw (same seed) stays as it was."""
    def motion(a: float, noise: float) -> np.ndarray:
        ds = load_dataset("synthme-casme2", setup="objective", magnification=a, noise=noise, pose=0.0)
        assert ds.meta["magnification"] == a
        return ds.landmarks[:, 1:] - ds.landmarks[:, :1]  # apex, offset minus onset: (N, 2, 68, 2) px

    clean1, clean3 = motion(1.0, 0.0), motion(3.0, 0.0)
    np.testing.assert_allclose(clean3, 3 * clean1, rtol=1e-4, atol=2e-3)  # the facial motion x 3
    assert np.abs(clean1).max() > 0.5  # and there is motion to magnify (px)
    noise1 = motion(1.0, 0.007) - clean1
    noise3 = motion(3.0, 0.007) - clean3
    np.testing.assert_allclose(noise3, noise1, atol=2e-3)  # detector noise is not magnified
    assert noise1.std() > 0.5  # ~0.7 px per point and frame, doubled by the difference of frames
    # landmark-space magnification (real data's only option) scales noise and motion alike
    base = load_dataset("synthme-casme2", setup="objective")
    mag = magnify(base.landmarks, 3.0)
    np.testing.assert_allclose(mag[:, 0], base.landmarks[:, 0])
    np.testing.assert_allclose(mag[:, 1] - mag[:, 0], 3 * (base.landmarks[:, 1] - base.landmarks[:, 0]),
                               rtol=1e-4, atol=1e-3)
    with pytest.raises(InputError, match="magnification"):
        load_dataset("synthme-tiny", setup="objective", magnification=0.0)


def test_setups():
    assert load_dataset("synthme-casme2", setup="objective5").class_names == ("I", "II", "III", "IV", "V")
    s5 = load_dataset("synthme-samm", setup="self5")
    assert s5.class_names == ("happiness", "anger", "surprise", "contempt", "others")
    m3 = load_dataset("synthme-casme2", setup="megc3")
    assert m3.class_names == ("negative", "positive", "surprise") and m3.labels.max() == 2


def test_small_preset_and_bad_knobs():
    ds = load_dataset("synthme-casme2", setup="objective", n_subjects=4, n_clips=40, seed=2)
    assert len(set(ds.subjects)) == 4 and min(ds.class_counts().values()) >= 2
    tiny = load_dataset("synthme-tiny", setup="objective")
    assert len(set(tiny.subjects)) == 6 and len(tiny.class_names) == 6
    with pytest.raises(InputError, match="unknown option"):
        load_dataset("synthme-tiny", setup="objective", n_subject=3)
    with pytest.raises(InputError, match="setup"):
        load_dataset("synthme-tiny", setup="bogus")
    with pytest.raises(InputError, match="unknown"):
        load_dataset("nosuch", setup="objective")
    with pytest.raises(InputError, match="noise"):
        load_dataset("synthme-tiny", setup="objective", noise=-1)


def test_cli_data_show_synthme():
    import json

    from click.testing import CliRunner

    from orchestrator.cli import main

    out = CliRunner().invoke(main, ["data", "show", "synthme-samm", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert info["subjects"] == 32 and info["clips"] == 141
    assert info["classes"] == {"I": 24, "II": 13, "III": 20, "VII": 84}
    assert sum(info["clips_per_subject"].values()) == 141
    table = CliRunner().invoke(main, ["data", "show", "synthme-casme2", "--setup", "self5"])
    assert table.exit_code == 0 and "not CASME II or SAMM" in table.stdout and "repression" in table.stdout
    bad = CliRunner().invoke(main, ["data", "show", "synthme-casme2", "--setup", "seven"])
    assert bad.exit_code == 2 and "setup" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
