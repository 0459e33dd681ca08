"""Start-up of a stage process: its libraries imported up front, and kept out of the collector's way."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterable


def import_and_freeze(modules: Iterable[str]) -> None:
    """Import `modules`, then exempt every object alive from garbage collection.

    A stage imports a few hundred thousand objects (MLflow, Great Expectations, scikit-learn) that
    live until it exits. Each full collection would walk all of them again; in the train stage at
    100k rows that was 0.6 s of a 6 s run. Objects made later are collected as usual.
    """
    for module in modules:
        importlib.import_module(module)
    gc.freeze()
