"""Pipeline stages run in an already warm process (the job worker), recorded by DVC afterwards.

`dvc repro` starts one Python process per stage, and each imports its libraries again: seconds per
stage. A process that runs the pipeline often imports them once (`preload`), runs the stages' own
code (`run`, the same `Stage` objects `python -m ml.<stage>` runs) and then `dvc commit`s them, so
dvc.lock holds what `dvc repro` would have written and a shell's `dvc status` / `dvc repro` find
the pipeline up to date.

Only while the ml code this process loaded is the code in the project: otherwise `run` raises
CodeChangedError and the caller runs `dvc repro`, which starts the new code. The caller serialises
pipeline runs in a project as it does its DVC commands (it holds the same lock).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ml import config, process
from ml import params as params_module
from ml.errors import PipelineError
from ml.stage import Outcome, Stage, acting_for, write_outputs
from ml.versioning import dvc, file_md5

# each stage of dvc.yaml and the library module that defines it
LIBRARIES = {"validate": "ml.validation", "prepare": "ml.splits", "train": "ml.training",
             "evaluate": "ml.gate"}
PIPELINE = tuple(LIBRARIES)
PACKAGE_DIR = Path(__file__).resolve().parent

_loaded: dict[str, dict[str, str]] = {}  # "code": md5 of each ml/*.py as this process imported it
_preload_lock = threading.Lock()


class CodeChangedError(PipelineError):
    """The project's ml code is not the code this process runs."""


class StageFailedError(PipelineError):
    """A stage ran and failed (a failed validation): its outputs are written, its summary is the message."""

    def __init__(self, stage: str, outcome: Outcome):
        super().__init__(outcome.summary)
        self.stage, self.outcome = stage, outcome


def _code(directory: Path) -> dict[str, str]:
    return {path.name: file_md5(path) for path in sorted(directory.glob("*.py"))}


def stage(name: str) -> Stage:
    if name not in LIBRARIES:
        raise PipelineError(f"no stage `{name}`: the stages are {', '.join(PIPELINE)}")
    return importlib.import_module(LIBRARIES[name]).STAGE


def preload() -> None:
    """Import every stage and the libraries it needs, once per process (seconds; later calls return
    at once). A long-lived process calls it when it starts, before it runs anything."""
    with _preload_lock:
        if "code" in _loaded:
            return
        before = _code(PACKAGE_DIR)
        for name in PIPELINE:
            process.import_and_freeze(stage(name).libraries)
        after = _code(PACKAGE_DIR)
        _warm_up()
        # edited while importing: which version was imported is unknown, so none matches
        _loaded["code"] = after if after == before else {}


def _warm_up() -> None:
    """What the first training in a process pays besides imports, paid here instead: CodeCarbon's
    hardware probe (about a second, see emissions.probe_hardware) and MLflow's index of installed
    packages, which it reads to check a model's requirements (about a second). Only a head start:
    whatever fails here is done again when needed."""
    with contextlib.suppress(Exception):
        from ml import emissions

        params = params_module.load(config.project_dir())
        emissions.new_tracker(params.emissions.country_iso_code, params.registry.model_name,
                              params.emissions.measure_power_secs, probe=True,
                              **params.emissions.tracker_options)
    from ml import training

    training.index_packages()


def code_matches(project: Path) -> bool:
    """True when the project's ml/*.py are, byte for byte, the files this process imported."""
    preload()
    return bool(_loaded["code"]) and _code(project / "ml") == _loaded["code"]


def commit(project: Path, stages: Sequence[str]) -> None:
    """Record `stages` in dvc.lock (and their cached outputs in the DVC cache) as they are now."""
    if stages:
        dvc("commit", "--force", *stages, cwd=project)


def run(project: Path, stages: Sequence[str] = PIPELINE, *, actor: str | None = None,
        log: Callable[[str], None] = print, record: bool = True) -> dict[str, Outcome]:
    """Run `stages` in order in this process, as `dvc repro --force` would run them in processes of
    their own; `actor` is who a promotion is recorded for. With `record`, the stages that succeeded
    are committed to dvc.lock (also when a later one fails); without, the caller commits them.

    Raises CodeChangedError before anything runs, StageFailedError for a stage that failed, and
    the PipelineError a stage raised.
    """
    unknown = [name for name in stages if name not in LIBRARIES]
    if unknown:
        raise PipelineError(f"no stage {', '.join(f'`{n}`' for n in unknown)}: "
                            f"the stages are {', '.join(PIPELINE)}")
    if not code_matches(project):
        raise CodeChangedError(f"the ml code in {project} is not the code this process loaded: "
                               "run the stages with `dvc repro`")
    params = params_module.load(project)
    outcomes: dict[str, Outcome] = {}
    try:
        with acting_for(actor):
            for name in stages:
                outcome = stage(name).run(project, params)
                write_outputs(project, outcome.outputs)
                log(outcome.summary)
                if not outcome.ok:
                    raise StageFailedError(name, outcome)
                outcomes[name] = outcome
    finally:
        if record:
            commit(project, list(outcomes))
    return outcomes
