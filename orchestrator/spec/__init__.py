"""The search-space file: what a sweep is, before anything runs.

``schema`` is the typed model of the YAML (one section per concern), ``safe_yaml`` the strict loader,
``overrides`` the ``--set`` edits, ``folds`` the protocols' fold sets (LOSO, nested inner folds, composite,
cross-dataset) and ``plan`` the pure functions that turn a spec into configs and units. Nothing here opens
a store, starts Ray or trains: the layers above (``search``, ``sweep``, ``commands``) import from here,
never the reverse (tests/test_layering.py).
"""

from orchestrator.spec.schema import (
    CategoricalParam,
    FloatParam,
    InnerSpec,
    MethodReference,
    PairSpec,
    PaperReference,
    ProtocolSpec,
    SearchSpec,
    SweepSpec,
    expand_grid,
    load_spec,
    parse_spec,
)

__all__ = ["CategoricalParam", "FloatParam", "InnerSpec", "MethodReference", "PairSpec", "PaperReference",
           "ProtocolSpec", "SearchSpec", "SweepSpec", "expand_grid", "load_spec", "parse_spec"]
