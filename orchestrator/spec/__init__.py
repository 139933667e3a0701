"""The search-space file: what a sweep is, before anything runs.

``schema`` is the root model of the YAML, :class:`SweepSpec`, composed of one small model per section
(``dataset``, ``protocol``, ``config_keys`` for ``model`` / ``train`` and an arm's keys, ``grid``,
``search``, ``resources``, ``tracking``, ``report``; their shared strict base in ``section``); ``load``
reads and checks a file (``pydantic_errors`` turns pydantic's errors into the one-line message),
``safe_yaml`` is the strict loader, ``overrides`` the ``--set`` edits, ``folds`` the protocols' fold sets
(LOSO, nested inner folds, composite, cross-dataset) and ``plan`` the pure functions that turn a spec into
configs and units. Nothing here opens a store, starts Ray or trains: the layers above (``search``,
``sweep``, ``commands``) import from here, never the reverse (tests/test_layering.py).
"""

from orchestrator.spec.grid import GridArm
from orchestrator.spec.load import load_spec, parse_spec
from orchestrator.spec.protocol import InnerSpec, PairSpec, ProtocolSpec
from orchestrator.spec.report import MethodReference, PaperReference
from orchestrator.spec.schema import SweepSpec, expand_grid
from orchestrator.spec.search import CategoricalParam, FloatParam, SearchSpec

__all__ = ["CategoricalParam", "FloatParam", "GridArm", "InnerSpec", "MethodReference", "PairSpec",
           "PaperReference", "ProtocolSpec", "SearchSpec", "SweepSpec", "expand_grid", "load_spec",
           "parse_spec"]
