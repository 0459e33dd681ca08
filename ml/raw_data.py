"""The raw data in the workspace, tracked by DVC and pushed to the remote.

Order of preference: the file already in the workspace, `dvc pull` from the remote, and, for a data
set with a `generator` block in params.yaml, generating it from its seed.
"""

from __future__ import annotations

from pathlib import Path

from ml import config
from ml.errors import DataError
from ml.generate import generate, write_csv
from ml.params import Params
from ml.stage import Outcome, Stage
from ml.versioning import add_and_push, data_version, ensure_project, pull


def ensure_raw_data(project: Path, params: Params) -> str:
    """Return the data version (DVC md5) of the raw data after it is tracked and pushed."""
    ensure_project(project)
    target = params.dataset.raw
    path = project / target
    if not path.is_file() and not pull(project, target):
        generator = params.dataset.generator
        if generator is None:
            raise DataError(f"`{target}` is missing and the DVC remote does not have it: put the CSV "
                            f"there and run `dvc add {target}`")
        write_csv(generate(generator.rows, generator.seed), path)
    add_and_push(project, target)
    return data_version(path)


def run(project: Path, params: Params) -> Outcome:
    version = ensure_raw_data(project, params)
    return Outcome(ok=True, result={"data_version": version},
                   summary=f"{params.dataset.raw}: data version {version}, pushed to "
                           f"{config.dvc_remote_url()}")


STAGE = Stage("data", run)
