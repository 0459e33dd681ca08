"""What every pipeline stage shares: its definition, its outcome, and `run_stage`, the body of its main().

A stage's work lives in a library module as a `Stage`; the stage module (`python -m ml.<stage>`,
what dvc.yaml runs) hands it to a warm stage host when one runs (ml.stage_client), else imports
it and calls `run_stage(STAGE)`. The same `Stage` runs in a warm process through ml.in_process.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ml import config, process
from ml import params as params_module
from ml.errors import PipelineError
from ml.params import Params

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("opcon_stage_actor", default=None)


@dataclasses.dataclass
class Outcome:
    """What a stage did: `outputs` (path relative to the project → content) are written even when
    it failed (a failed validation still leaves its report); `result` is for a caller in-process."""

    ok: bool
    summary: str
    outputs: dict[str, str | bytes] = dataclasses.field(default_factory=dict)
    result: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Stage:
    """A pipeline stage. `libraries` are imported (and exempted from the collector) before the work
    in a fresh process; `overlap`, given the params, returns work for a thread beside those imports
    (it must import nothing: two threads importing at once can deadlock)."""

    name: str
    run: Callable[[Path, Params], Outcome]
    libraries: tuple[str, ...] = ()
    overlap: Callable[[Params], Callable[[], object]] | None = None


def write_outputs(project: Path, outputs: dict[str, str | bytes]) -> None:
    """Each output replaced whole, so a reader never sees half a file."""
    for relative, content in outputs.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if isinstance(content, bytes):
            partial.write_bytes(content)
        else:
            partial.write_text(content)
        os.replace(partial, path)


def run_stage(stage: Stage, project: Path | None = None) -> int:
    """A stage as DVC starts it, in the project directory: its exit code."""
    config.quiet_third_parties()
    project = project or Path.cwd()
    try:
        params = params_module.load(project)
        with ThreadPoolExecutor(max_workers=1) as pool:
            if stage.overlap is not None:
                pool.submit(stage.overlap(params))
            process.import_and_freeze(stage.libraries)
            outcome = stage.run(project, params)
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 1
    write_outputs(project, outcome.outputs)
    print(outcome.summary, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


@contextlib.contextmanager
def acting_for(actor: str | None) -> Iterator[None]:
    """Stages run in this context (this thread) act for `actor`: it is who moves an alias."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def actor() -> str | None:
    """Who the stage acts for when run in-process; None in a stage process (OPCON_ACTOR applies)."""
    return _actor.get()
