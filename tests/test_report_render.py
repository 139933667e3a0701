"""The report's writers on frames built here (no MLflow, no Ray): Fig. 5's landmark names, Fig. 9's
holes, the display rules shared by Markdown / LaTeX / HTML (mean ± sd over seeds, bold best, significance
mark, columns added or missing), the methods paragraph and the path redaction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_model.landmarks import LANDMARK_NAMES, node_names, point_set
from orchestrator.report import figures
from orchestrator.report.display import SIG_MARK, arm_display, significance_display
from orchestrator.report.latex import table_tex
from orchestrator.report.markdown import md_table
from orchestrator.report.methods import methods_paragraph
from orchestrator.report.redact import redact_paths


@pytest.mark.parametrize("points,layers", [(14, 3), (31, 1), (68, 1)])  # 68 names x 3 panels: 20 s
def test_fig5_ticks_are_landmark_names(tmp_path, points, layers):
    rng = np.random.default_rng(points)
    keys = ("layer1.xy", "layer1.dalpha", "layer2")[:layers]
    mats = {k: rng.random((points, points)) for k in keys}
    fig = figures.lam_heatmaps(mats, "t", tmp_path / "fig5.png")
    names = list(node_names(points))
    assert len(set(names)) == points and not any(n.isdigit() for n in names)
    for ax in fig.axes[:layers]:
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        assert [t.get_text() for t in ax.get_yticklabels()] == names
        assert list(ax.get_xticks()) == list(range(points))  # one tick per node, no fractional ticks
    svg = (tmp_path / "fig5.svg").read_text()
    assert "R mouth corner" in svg and "L brow in" in svg  # text stays text in the vector file
    assert (tmp_path / "fig5.pdf").read_bytes()[:5] == b"%PDF-"
    from PIL import Image

    with Image.open(tmp_path / "fig5.png") as im:
        assert round(im.info["dpi"][0]) == figures.PNG_DPI
        assert im.size[0] == pytest.approx(figures.TWO_COLUMN_IN * figures.PNG_DPI, abs=2)


def test_landmark_names_follow_dlib_sides():
    assert len(LANDMARK_NAMES) == 68 and len(set(LANDMARK_NAMES)) == 68
    # the 14-point set's brows and mouth corners (dlib 17, 21, 22, 48, 54), subject's right first
    named = dict(zip(point_set(14).indices, node_names(14), strict=True))
    assert (named[17], named[21], named[22], named[48], named[54]) == (
        "R brow out", "R brow in", "L brow in", "R mouth corner", "L mouth corner")


def test_fig9_marks_the_holes_of_the_grid(tmp_path):
    pts = pd.DataFrame({
        "beta": [0.1, 0.5, 0.9, 0.3, 0.1],
        "accuracy": [0.5, 0.6, 0.8, np.nan, 0.4],
        "status": ["complete", "complete", "complete", "pruned", "complete"],
        "fusion_layer": [1, 2, 1, 2, 2],
    })
    holes = figures.beta_grid_holes(pts)
    got = {(r.beta, r.fusion_layer): r.status for r in holes.itertuples()}
    assert got == {(0.3, 1): "not run", (0.5, 1): "not run", (0.3, 2): "pruned", (0.9, 2): "not run"}
    fig = figures.accuracy_vs_beta(pts, holes, "t", tmp_path / "f9.png")
    ax = fig.axes[0]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert sum(len(ln.get_xdata()) for ln in marks) == len(holes)
    # the layer-1 line is broken at its holes: no segment joins 0.1 and 0.9 through 0.3 / 0.5
    layer1 = next(ln for ln in ax.get_lines() if ln.get_label() == "fusion layer 1")
    assert np.isnan(np.asarray(layer1.get_ydata(), float)).sum() == 2
    # a continuous search (many betas) has no grid: only its non-complete arms are holes
    status = ["complete"] * 29 + ["failed"]
    many = pd.DataFrame({"beta": np.linspace(0, 1, 30), "accuracy": 0.5, "status": status})
    assert list(figures.beta_grid_holes(many)["status"]) == ["failed"]


def _arm_table(**extra):
    t = pd.DataFrame({
        "arm": ["base", "a<b>|c", "x"], "status": ["complete", "complete", "incomplete"],
        "baseline": [True, False, False], "n_folds_complete": [6, 6, 5], "n_folds_failed": [0, 0, 1],
        "lam": [False, True, True], "accuracy": [0.5, 0.75, np.nan], "uf1": [0.4, 0.3, np.nan],
    })
    return t.assign(**extra)


def test_display_sd_bold_and_significance_are_generic():
    sig = pd.DataFrame({"arm": ["a<b>|c", "x"], "baseline": ["base", "base"], "significant": [True, False],
                        "p_adj": [0.01, 0.5], "correction": ["holm", "holm"], "n_subjects": [6, 5]})
    t = _arm_table(accuracy_sd=[0.01, np.nan, np.nan], new_column=["p", "q", "r"])
    d = arm_display(t, sig)
    acc = d.cells["ACC % (pooled)"].tolist()
    assert acc == ["50.00 ± 1.00", "75.00", "—"]  # ± only where the sd is there and not blank
    assert d.bold["ACC % (pooled)"].tolist() == [False, True, False]
    assert d.bold["F1 = UF1 (pooled)"].tolist() == [True, False, False]
    assert d.cells["arm"].tolist() == ["base (baseline)", f"a<b>|c{SIG_MARK}", "x"]
    assert "new_column" in d.cells and "uar" not in " ".join(d.cells.columns)  # extra shown, missing skipped
    s = significance_display(sig)
    assert s.cells["p (adjusted)"].tolist() == ["0.01", "0.5"] and s.bold["verdict"].tolist() == [True, False]
    md = md_table(d)
    assert r"a&lt;b&gt;\|c†" in md and "**75.00**" in md
    tex = table_tex(d, "caption with 5% & _", "tab:x")
    assert r"a\textless{}b\textgreater{}\textbar{}c$^\dagger$" in tex and r"\textbf{75.00}" in tex
    assert r"50.00 $\pm$ 1.00" in tex and r"caption with 5\% \& \_" in tex


def test_methods_paragraph_states_the_protocol():
    spec = {
        "dataset": {"name": "synthme-casme2", "magnification": 3.0, "knobs": {"n_augment": 2}},
        "protocol": {"seeds": [0, 1, 2], "objective": "uf1"},
        "train": {"epochs": 60, "optimizer": "adam", "lr": 0.001},
        "grid": [{"name": "a"}],
    }
    text = methods_paragraph(spec, dataset="synthme-casme2", setup="objective", n_subjects=26,
                             objective="uf1", environment={"torch": "2.13.0", "home": "/root/x"})
    for phrase in ("26 folds", "3 training seeds (0, 1, 2)", "60 epochs", "Adam", "our choices",
                   "magnified by 3", "following the setup in its [9]", "2 extra training views",
                   "no selection", "torch: 2.13.0"):
        assert phrase in text, phrase
    assert "/root" not in text and "selected on the test subjects" not in text  # no search: nothing selected
    searched = methods_paragraph({**spec, "search": {"n_trials": 5, "params": {"beta": {}}}},
                                 dataset="synthme-casme2", setup=None, n_subjects=26, objective="uf1",
                                 environment=None)
    assert "selected on the test subjects, optimistic" in searched and "no environment record" in searched


def test_redact_paths_keeps_names_and_urls():
    assert redact_paths("sqlite:////tmp/a/b/mlflow.db") == "sqlite:///…/mlflow.db"
    assert redact_paths("--out /home/me/r --tracking-uri http://127.0.0.1:5000/x/y") == (
        "--out …/r --tracking-uri http://127.0.0.1:5000/x/y")
    assert redact_paths("tables/table_V.csv · 6 / 0") == "tables/table_V.csv · 6 / 0"
