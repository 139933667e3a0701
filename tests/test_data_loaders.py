"""SMIC-HS (SMIC-E), CAS(ME)^3 part A and MMEW loaders end to end through real dlib on fixture datasets in
the released layouts (tests/real_fixtures.py), the landmark cache, and the one-line bad-input errors."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from real_fixtures import FixtureClip, write_casme3, write_mmew, write_smic

from mer_model.data import load_dataset
from mer_model.errors import InputError
from orchestrator.cli import main

WRITERS = {"smic": write_smic, "casme3": write_casme3, "mmew": write_mmew}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, write in WRITERS.items():
        out[name] = tmp_path_factory.mktemp(name) / name.upper()
        write(out[name])
    return out


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / root.name
    shutil.copytree(root, dst)
    return dst


def _load(name, root, cache, setup="megc3"):
    return load_dataset(name, setup=setup, root=root, cache_dir=cache, crop_scales=())


def _mouth_dy(ds):
    x = ds.landmarks
    return (x[:, 1, [48, 54], 1] - x[:, 0, [48, 54], 1]).mean(1)  # apex - onset, px, y down


# --- the layouts load ------------------------------------------------------------------------------------

def test_smic_layout_no_au_labels_and_middle_apex(roots, tmp_path):
    ds = _load("smic", roots["smic"], tmp_path)
    assert ds.class_names == ("negative", "positive", "surprise") and len(ds) == 6
    assert sorted(set(ds.subjects)) == ["s01", "s02", "s03"]
    assert ds.clips[0] == "s01/s1_po_01"
    assert ds.aus.shape == (6, 0) and ds.au_labelled.dtype == bool and not ds.au_labelled.any()
    # the apex is the middle frame (the sheet gives none): that frame carries the fixture's mouth lift
    positive = ds.labels == ds.class_names.index("positive")
    assert _mouth_dy(ds)[positive].max() < -1.0 and _mouth_dy(ds)[~positive].min() > -1.0
    # the cache keeps au_labelled: a second load, from the cache, still has no AU labels
    again = _load("smic", roots["smic"], tmp_path)
    assert again.meta["cache_hit"] is True and not again.au_labelled.any()
    with pytest.raises(InputError, match="no AU labels"):
        _load("smic", roots["smic"], tmp_path, setup="objective")


def test_smic_older_layout_micro_emotion_folders(roots, tmp_path):
    root = _copy(roots["smic"], tmp_path)
    for sub in sorted(root.glob("s0*")):  # s01/s1_po_01 -> s1/micro/positive/s1_po_01
        for clip in sorted(sub.iterdir()):
            emo = {"po": "positive", "ne": "negative", "sur": "surprise"}[clip.name.split("_")[1]]
            dst = root / f"s{int(sub.name[1:])}" / "micro" / emo / clip.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            clip.rename(dst)
        sub.rmdir()
    a = _load("smic", roots["smic"], tmp_path / "c1")
    b = _load("smic", root, tmp_path / "c2")
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_casme3_layout_several_clips_per_video(roots, tmp_path):
    ds = _load("casme3", roots["casme3"], tmp_path, setup="emotion7")
    assert len(ds) == 9 and sorted(set(ds.subjects)) == ["spNO.1", "spNO.2", "spNO.3"]
    # two micro-expressions of video a: the onset keeps the clip ids apart; "J" is read as video j
    assert list(ds.clips[:3]) == ["spNO.1/a/100", "spNO.1/a/300", "spNO.1/j/40"]
    assert ds.class_counts()["happiness"] == 3 and ds.class_counts()["others"] == 3  # happy, Others
    assert "AU18" in ds.au_names  # the T18 cell (T prefix read like a side prefix)
    happy = ds.labels == ds.class_names.index("happiness")
    assert _mouth_dy(ds)[happy].max() < -1.0
    e4 = _load("casme3", roots["casme3"], tmp_path, setup="emotion4")
    assert e4.class_counts() == {"negative": 3, "positive": 3, "surprise": 0, "others": 3}
    assert _load("casme3", roots["casme3"], tmp_path).class_counts() == {"negative": 3, "positive": 3,
                                                                         "surprise": 0}


def test_casme3_known_bad_cell_of_the_release_is_repaired(tmp_path):
    # spNO.40 e rows of the v2 sheet have offset 0; the loader uses the corrected value (MEB's 1845)
    clips = [FixtureClip(40, "e", 1812, 1824, 1845, "12", "happy"),
             FixtureClip(41, "a", 10, 15, 21, "4", "disgust")]
    root = tmp_path / "c3"
    sheet = write_casme3(root, clips)
    df = pd.read_excel(sheet, sheet_name="label", dtype=object)
    df.loc[0, "Offset"] = 0
    with pd.ExcelWriter(sheet) as w:
        df.to_excel(w, sheet_name="label", index=False)
    with pytest.warns(UserWarning, match="repaired"):
        ds = _load("casme3", root, tmp_path / "cache", setup="emotion7")
    assert ds.meta["repairs"] == ["row 2: Offset 0 -> 1845 (known error of the release)"]
    assert list(ds.clips) == ["spNO.40/e/1812", "spNO.41/a/10"]


def test_mmew_layout_emotion_folders_and_repression(roots, tmp_path):
    ds = _load("mmew", roots["mmew"], tmp_path, setup="emotion7")
    assert len(ds) == 6 and sorted(set(ds.subjects)) == ["S01", "S02", "S03"]
    assert ds.clips[0] == "S01/S01-04-001"
    assert ds.class_counts()["others"] == 2  # the sheet's others, in the release's "repression" folder
    assert ds.au_names == ("AU1", "AU2", "AU4", "AU12") and ds.au_labelled is None
    happy = ds.labels == ds.class_names.index("happiness")
    assert _mouth_dy(ds)[happy].max() < -1.0
    m3 = _load("mmew", roots["mmew"], tmp_path)
    assert m3.class_counts() == {"negative": 1, "positive": 1, "surprise": 2}
    with pytest.raises(InputError, match="mmew"):
        _load("mmew", roots["mmew"], tmp_path, setup="objective")


def test_mmew_subject_level_layout(roots, tmp_path):
    root = _copy(roots["mmew"], tmp_path)
    micro = root / "Micro_Expression"
    for emo in sorted(p for p in micro.iterdir() if p.is_dir()):
        for clip in sorted(emo.iterdir()):
            dst = micro / clip.name[:3] / emo.name / clip.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            clip.rename(dst)
        emo.rmdir()
    a = _load("mmew", roots["mmew"], tmp_path / "c1", setup="emotion7")
    b = _load("mmew", root, tmp_path / "c2", setup="emotion7")
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


# --- bad input: one line naming file, row and released column; exit 2; nothing in the cache -------------

def _sheet(root: Path) -> Path:
    return next(p for p in root.rglob("*.xlsx"))


def _edit(root: Path, row: int, column: str, value, sheet_name=0):
    sheet = _sheet(root)
    df = pd.read_excel(sheet, sheet_name=sheet_name, dtype=object)
    df.loc[row - 2, column] = value  # spreadsheet row r is DataFrame row r - 2 (header on row 1)
    if sheet_name == 0:
        df.to_excel(sheet, index=False)
    else:
        with pd.ExcelWriter(sheet) as w:
            df.to_excel(w, sheet_name=sheet_name, index=False)
    return sheet.name


def _first_frame(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


BREAKERS = {
    # dataset: [(breaker(root) -> expected parts of the one line)]
    "smic": [
        lambda r: [_edit(r, 3, "OnsetF", "abc"), "row 3", "OnsetF 'abc' is not a frame number"],
        lambda r: [_edit(r, 4, "Emotion", "happy"), "row 4", "Emotion 'happy'", "negative, positive"],
        lambda r: (_first_frame(r, "s01/s1_po_01/image*.jpg").unlink(),
                   ["row 2", "OnsetF", "no image", "s1_po_01"])[1],
        lambda r: [_edit(r, 2, "Subject", "x7"), "row 2", "Subject 'x7' is not a subject id"],
    ],
    "casme3": [
        lambda r: [_edit(r, 3, "Apex", "?", "label"), "row 3", "Apex '?' is not a frame number"],
        lambda r: [_edit(r, 2, "AU", "12+smile", "label"), "row 2", "AU:", "'smile' is not an AU code"],
        lambda r: [_edit(r, 2, "emotion", "bored", "label"), "row 2", "emotion 'bored'"],
        lambda r: (_first_frame(r, "spNO.1/a/color/305.jpg").unlink(),
                   ["row 3", "Apex 305", "no image", "305.jpg"])[1],
        lambda r: [_edit(r, 2, "Objective class", "IX", "label"), "row 2", "Objective class 'IX'"],
    ],
    "mmew": [
        lambda r: [_edit(r, 2, "OffsetFrame", 1.5), "row 2", "OffsetFrame 1.5 is not a frame number"],
        lambda r: [_edit(r, 5, "Estimated Emotion", "contempt"), "row 5", "Estimated Emotion 'contempt'"],
        lambda r: (shutil.rmtree(next((r / "Micro_Expression" / "happiness").iterdir())),
                   ["row", "clip folder", "does not exist"])[1],
    ],
}
CASES = [(name, i) for name, bs in BREAKERS.items() for i in range(len(bs))]


@pytest.mark.parametrize("name, i", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_bad_input_is_one_line_and_exit_2(roots, tmp_path, name, i):
    root = _copy(roots[name], tmp_path)
    expected = BREAKERS[name][i](root)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, ["extract", name, "--root", str(root), "--cache-dir", str(cache),
                                       "--crop-scales", ""])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(root) in lines[0]  # names the file (the sheet, or the clip folder under the root)
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-written
    with pytest.raises(InputError):
        _load(name, root, cache, setup="megc3")


def test_cli_extract_and_show_smic(roots, tmp_path):
    import json

    runner = CliRunner()
    cache = tmp_path / "cache"
    built = runner.invoke(main, ["extract", "smic", "--root", str(roots["smic"]), "--cache-dir", str(cache),
                                 "--crop-scales", ""])
    assert built.exit_code == 0, built.output
    assert "built" in built.stdout and "6 clips, 3 subjects" in built.stdout
    shown = runner.invoke(main, ["data", "show", "smic", "--root", str(roots["smic"]), "--cache-dir",
                                 str(cache), "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["setup"] == "megc3" and info["clips"] == 6 and info["au_names"] == []
    refused = runner.invoke(main, ["data", "show", "smic", "--root", str(roots["smic"]), "--setup",
                                   "objective", "--cache-dir", str(cache)])
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
