"""The caption of a paper table: dataset, protocol, metric convention and what bold, the marks and the
paper's columns mean (plain text; the LaTeX writer escapes it). Shared by the Markdown and LaTeX views."""

from __future__ import annotations

import pandas as pd

from orchestrator.report.display import POOLED, SIG_MARK, extension_arms, extension_footnote

_PROTOCOL = {  # the protocol and what "pooled" means under it, for table captions
    "loso": "leave-one-subject-out (LOSO) over {n} subjects. ACC (%), F1 (= UF1, macro-F1 over classes) and "
            "UAR are pooled over the LOSO folds (computed once on the predictions of all folds); per-fold "
            "columns are mean ± std over the left-out subjects.",
    "composite": "composite LOSO over the {n} subjects of the union (each fold leaves out one subject of one "
                 "dataset). ACC (%), F1 (= UF1, macro-F1 over classes) and UAR are pooled over every fold's "
                 "predictions (the whole composite); a dataset's columns are pooled over its own subjects' "
                 "folds; per-fold columns are mean ± std over the left-out subjects.",
    "cross_dataset": "cross-dataset, {n} (training datasets, test dataset) pairs. A dataset's columns are "
                     "pooled over its predictions when it is the test set; ACC (%), F1 (= UF1) and UAR over "
                     "every pair's predictions together; per-fold columns are mean ± std over the pairs.",
}


def table_caption(
    title: str,
    dataset: str,
    setup: str | None,
    n_subjects: int,
    table: pd.DataFrame,
    sig: pd.DataFrame | None = None,
    reference: pd.DataFrame | None = None,
    scheme: str = "loso",
) -> str:
    """Caption of a paper table: dataset, protocol (``scheme``), metric convention, what bold / the mark /
    the paper's columns mean. Plain text (the LaTeX writer escapes it)."""
    from mer_model.data.dataset import is_synthetic

    synth = is_synthetic(dataset)
    parts = [
        f"{title}.",
        f"Dataset {dataset}" + (" (synthetic; not CASME II or SAMM numbers)" if synth else "")
        + (f", class setup {setup}" if setup else "") + f"; {_PROTOCOL[scheme].format(n=n_subjects)}",
    ]
    if any(f"{m}_sd" in table and table[f"{m}_sd"].notna().any() for m in POOLED):
        parts.append("Pooled value ± sd: standard deviation over training seeds.")
    parts.append("Bold: best value of each metric column.")
    correction = ""
    if sig is not None and "correction" in sig and sig["correction"].notna().any():
        correction = f", after {sig['correction'].dropna().astype(str).iloc[0]} correction"
    parts.append(f"{SIG_MARK}: significantly different from the table's baseline on that metric (pooled "
                 f"subject-swap permutation test of the seed-mean pooled difference{correction}; primary "
                 "metric only).")
    if ext := extension_arms(table):
        parts.append(extension_footnote(ext))
    if reference is not None and len(reference):
        tables = ", ".join(sorted(reference["paper_table"].dropna().astype(str).unique()))
        parts.append(
            f"'paper:' columns: the values published by Wei et al. (Table {tables}) on CASME II and SAMM, "
            "for reference only; they enter no test"
            + ("; not comparable with these SynthME numbers." if synth else ".")
        )
    return " ".join(parts)
