"""The MLflow store: what a sweep writes and every reader reads.

``contract`` names every tag, metric and artifact once (writer and reader import it); ``tracking`` writes
fold, config and sweep runs; ``reuse`` finds units already done; ``listing`` reads sweeps back for ``ls``,
``status`` and ``report``; ``environment`` records the software a sweep ran on; ``outage`` rides out a
remote store's restart; ``names`` makes names safe for paths. The bottom layer: it imports nothing else
from ``orchestrator`` (tests/test_layering.py). Submodules are imported on use, not here, so that
``import orchestrator.store.contract`` stays free of MLflow's import time.
"""
