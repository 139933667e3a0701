"""CASME II / SAMM loaders end to end through real dlib on fixture datasets in the released layouts
(astronaut photo with small warps), the landmark cache, and every bad-input case with its exit code."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from real_fixtures import FixtureClip, write_casme2, write_samm

from mer_model.data import dlib_landmarks, load_dataset
from mer_model.data.au import parse_au_string
from mer_model.data.cache import write_atomic
from mer_model.errors import InputError
from orchestrator.cli import main


@pytest.fixture(scope="module")
def casme2_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("casme2") / "CASME2"
    write_casme2(root)
    return root


@pytest.fixture(scope="module")
def samm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("samm") / "SAMM"
    write_samm(root)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / root.name
    shutil.copytree(root, dst)
    return dst


def test_au_strings():
    assert parse_au_string("4+L10") == {4, 10}
    assert parse_au_string("R12+L14A") == {12, 14}
    assert parse_au_string("1+2") == {1, 2}
    assert parse_au_string("12 or 14") == {12, 14}
    assert parse_au_string("AU4+AU7") == {4, 7}
    assert parse_au_string("R4B+R7") == {4, 7}
    assert parse_au_string("25+26+(38)") == {25, 26, 38}
    assert parse_au_string(12.0) == {12}
    assert parse_au_string(float("nan")) == frozenset()
    with pytest.raises(ValueError, match="not an AU code"):
        parse_au_string("4+smile")


def _mouth_and_brow_motion(ds):
    x = ds.landmarks
    corners = (x[:, 1, [48, 54], 1] - x[:, 0, [48, 54], 1]).mean(1)  # apex - onset, px, y down
    brows = (x[:, 1, 17:27, 1] - x[:, 0, 17:27, 1]).mean(1)
    return corners, brows


def test_casme2_end_to_end_through_dlib(casme2_root, tmp_path):
    ds = load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path)
    assert ds.landmarks.shape == (6, 3, 68, 2) and ds.landmarks.dtype == np.float32
    assert sorted(set(ds.subjects)) == ["sub01", "sub02", "sub03"]
    assert ds.clips[0] == "sub01/EP02_01f" and len(set(ds.clips)) == 6
    assert ds.au_names == ("AU4", "AU12")
    # landmarks lie on the 200 x 200 face crop, around the face (not at a false box)
    assert ds.landmarks.min() > 20 and ds.landmarks.max() < 180
    # the warps are real motion and dlib sees it: AU12 clips lift the mouth corners, AU4 clips lower brows
    corners, brows = _mouth_and_brow_motion(ds)
    au12, au4 = ds.aus[:, 1] == 1, ds.aus[:, 0] == 1
    assert corners[au12].max() < -1.0 and corners[~au12].min() > -1.0
    assert brows[au4].mean() > brows[~au4].mean() + 0.5
    # objective classes derived from the AU strings: 12 -> I, 4 -> III, 4+12 -> VII
    names = [ds.class_names[k] for k in ds.labels]
    aus = [frozenset(n for n, on in zip((4, 12), row, strict=True) if on) for row in ds.aus]
    assert all({frozenset({12}): "I", frozenset({4}): "III", frozenset({4, 12}): "VII"}[a] == n
               for a, n in zip(aus, names, strict=True))
    # crop-size augmentation: 3 extra views, each a re-detection close to (but not equal to) the base
    assert ds.augment.shape == (6, 3, 3, 68, 2)
    diff = np.abs(ds.augment - ds.landmarks[:, None]).mean(axis=(0, 2, 3, 4))
    assert (diff > 0.05).all() and (diff < 5).all()
    assert ds.meta["source"] == "casme2" and len(ds.meta["cache_key"]) == 64
    # magnification at load time: onset kept, onset-relative motion x3
    mag = load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path, magnification=3)
    np.testing.assert_allclose(mag.landmarks[:, 2] - mag.landmarks[:, 0],
                               3 * (ds.landmarks[:, 2] - ds.landmarks[:, 0]), atol=1e-3)
    # self-reports: "others" kept, setup labels from the emotion column
    s5 = load_dataset("casme2", setup="self5", root=casme2_root, cache_dir=tmp_path)
    assert s5.class_counts()["happiness"] >= 1 and s5.class_counts()["others"] >= 1


def test_casme2_csv_gives_the_same_landmarks(casme2_root, tmp_path):
    root = _copy(casme2_root, tmp_path)
    sheet = next(root.glob("*.xlsx"))
    import pandas as pd

    pd.read_excel(sheet).to_csv(sheet.with_suffix(".csv"), index=False)
    sheet.unlink()
    a = load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path / "c1", crop_scales=())
    b = load_dataset("casme2", setup="objective", root=root, cache_dir=tmp_path / "c2", crop_scales=())
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert b.augment is None


def test_samm_title_rows_and_layout(samm_root, tmp_path):
    ds = load_dataset("samm", setup="objective", root=samm_root, cache_dir=tmp_path, crop_scales=())
    assert sorted(set(ds.subjects)) == ["006", "007", "008"]
    assert ds.clips[0] == "006/006_1_1"
    assert ds.class_names == ("I", "II", "III", "VII")
    corners, _ = _mouth_and_brow_motion(ds)
    assert corners[ds.aus[:, 1] == 1].max() < -1.0
    for subject, train, test in ds.loso_splits():
        assert subject not in set(ds.subjects[train]) and set(ds.subjects[test]) == {subject}


def test_cache_reuse_does_not_run_dlib(casme2_root, tmp_path, monkeypatch):
    first = load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path, crop_scales=())
    assert first.meta["cache_hit"] is False
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]

    def no_dlib(*args, **kwargs):
        raise AssertionError("dlib extraction ran although the cache entry matches")

    monkeypatch.setattr(dlib_landmarks, "extract_rows", no_dlib)
    again = load_dataset("casme2", setup="objective5", root=casme2_root, cache_dir=tmp_path, crop_scales=())
    assert again.meta["cache_hit"] is True
    np.testing.assert_array_equal(first.landmarks[np.isin(first.clips, again.clips)], again.landmarks)
    # a changed frame file or changed settings is a different key: extraction would run again
    with pytest.raises(AssertionError, match="dlib extraction ran"):
        load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path, crop_scales=(1.5,))
    root = _copy(casme2_root, tmp_path / "copy")
    apex = root / "sub02" / "EP04_03f" / "img15.jpg"
    Image.open(apex).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(apex)
    with pytest.raises(AssertionError, match="dlib extraction ran"):
        load_dataset("casme2", setup="objective", root=root, cache_dir=tmp_path, crop_scales=())


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "entry.npz"
    write_atomic(target, {"a": np.arange(3)})

    class Exploding:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):  # fails after "a" was already written to the temp
        write_atomic(target, {"a": np.arange(5), "b": Exploding()})
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]  # no temp file left
    with np.load(target) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))  # the previous complete entry is intact


# --- bad input: one line naming the file and row, exit code 2, nothing in the cache ----------------------

def _break_missing_column(root):
    import pandas as pd

    sheet = next(root.glob("*.xlsx"))
    pd.read_excel(sheet).drop(columns=["ApexFrame"]).to_excel(sheet, index=False)
    return [sheet.name, "row 1", "missing column(s) Apex Frame"]


def _break_missing_frame(root):
    (root / "sub02" / "EP04_03f" / "img15.jpg").unlink()
    return ["row 4", "Apex Frame 15", "no image", "img15.jpg"]


def _break_unreadable_image(root):
    (root / "sub01" / "EP02_01f" / "img10.jpg").write_bytes(b"not a jpeg at all")
    return ["row 2", "img10.jpg", "unreadable image"]


def _break_no_face(root):
    gray = np.full((200, 200, 3), 128, np.uint8)
    Image.fromarray(gray).save(root / "sub01" / "EP02_01f" / "img10.jpg")
    return ["row 2", "img10.jpg", "no face found"]


def _break_subject_without_clips(root):
    folder = root / "sub09" / "EP01_01"
    folder.mkdir(parents=True)
    shutil.copy(root / "sub01" / "EP02_01f" / "img10.jpg", folder / "img1.jpg")
    return ["subject sub09", "has no clips"]


@pytest.mark.parametrize("breaker", [_break_missing_column, _break_missing_frame, _break_unreadable_image,
                                     _break_no_face, _break_subject_without_clips])
def test_bad_input_is_one_line_and_exit_2(casme2_root, tmp_path, breaker):
    root = _copy(casme2_root, tmp_path)
    expected = breaker(root)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, ["extract", "casme2", "--root", str(root), "--cache-dir", str(cache),
                                       "--crop-scales", ""])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1  # one line naming the file and field (orchestrator.cli prints every InputError)
    for part in expected:
        assert part in lines[0]
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-written
    with pytest.raises(InputError):  # the library raises the same error (a ValueError) for notebooks
        load_dataset("casme2", setup="objective", root=root, cache_dir=cache, crop_scales=())


def test_cli_extract_then_show(samm_root, tmp_path):
    runner = CliRunner()
    cache = tmp_path / "cache"
    built = runner.invoke(main, ["extract", "samm", "--root", str(samm_root), "--cache-dir", str(cache),
                                 "--crop-scales", "1.5"])
    assert built.exit_code == 0, built.output
    assert "built" in built.stdout and "6 clips, 3 subjects" in built.stdout
    reused = runner.invoke(main, ["extract", "samm", "--root", str(samm_root), "--cache-dir", str(cache),
                                  "--crop-scales", "1.5"])
    assert "reused" in reused.stdout
    import json

    shown = runner.invoke(main, ["data", "show", "samm", "--root", str(samm_root), "--cache-dir", str(cache),
                                 "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["subjects"] == 3 and info["clips"] == sum(info["classes"].values())
    missing = runner.invoke(main, ["data", "show", "samm", "--root", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_repairs_of_known_bad_apex_and_offset(tmp_path):
    clips = [FixtureClip(1, "", 10, 15, 21, "12", "happiness"),
             FixtureClip(2, "", 10, 15, 21, "4", "disgust")]
    root = tmp_path / "c"
    sheet = write_casme2(root, clips)
    import pandas as pd

    df = pd.read_excel(sheet, dtype=object)
    df.loc[0, "ApexFrame"] = "/"  # released sheets carry a few unusable apex / offset cells
    df.loc[1, "OffsetFrame"] = 0
    df.to_excel(sheet, index=False)
    ds = load_dataset("casme2", setup="objective", root=root, cache_dir=tmp_path / "cache", crop_scales=())
    assert ds.meta["repairs"] == ["row 2: apex -> middle frame 15", "row 3: offset -> last frame 21"]
