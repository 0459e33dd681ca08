"""Stage `data`: make sure the raw data is in the workspace, tracked by DVC and pushed to the remote.

Order of preference: the file already in the workspace, `dvc pull` from the remote, and, for a data
set with a `generator` block in params.yaml, generating it from its seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ml import config
from ml import params as params_module
from ml.errors import DataError, PipelineError
from ml.generate import generate, write_csv
from ml.params import Params
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


def main() -> int:
    config.quiet_third_parties()
    project = config.project_dir()
    try:
        params = params_module.load(project)
        version = ensure_raw_data(project, params)
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{params.dataset.raw}: data version {version}, pushed to {config.dvc_remote_url()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
