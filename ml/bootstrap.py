"""Set up a workspace from nothing: state dir, DVC remote and cache, raw data, a first champion.

    python -m ml.bootstrap            # data only (what `make test` needs)
    python -m ml.bootstrap --train    # ... and train a first champion when there is none

Idempotent: a second call finds everything in place and returns in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys

from ml import config, registry
from ml import params as params_module
from ml.errors import PipelineError
from ml.raw_data import ensure_raw_data
from ml.versioning import push, repro


def bootstrap(train: bool) -> list[str]:
    project = config.project_dir()
    params = params_module.load(project)
    done = [f"state dir       {config.state_dir()}"]
    version = ensure_raw_data(project, params)
    done.append(f"raw data        {params.dataset.raw} (data version {version}), "
                f"DVC remote {config.dvc_remote_url()}")
    if train:
        name = params.registry.model_name
        current = registry.champion(name)
        if current is None:
            os.environ.setdefault(registry.ACTOR_VARIABLE, "bootstrap")  # the first champion's mover
            repro(project, "--force")  # outputs may be up to date in a checkout with a new state dir
            push(project)
            current = registry.champion(name)
        if current is None:
            raise PipelineError("the pipeline ran but registered no champion: see metrics/evaluate.json")
        done.append(f"champion        {name} version {current.version} "
                    f"(MLflow store {config.mlflow_tracking_uri()})")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train a champion if there is none")
    args = parser.parse_args(argv)
    config.quiet_third_parties()
    try:
        for line in bootstrap(args.train):
            print(line)
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
