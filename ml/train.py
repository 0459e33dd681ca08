"""Stage `train`: fit the scikit-learn pipeline, choose the threshold, log everything to MLflow.

What `python -m ml.train` (dvc.yaml) runs; the work is ml.training's, done by a
warm stage host when one runs (ml.stage_host).
"""

import sys
from pathlib import Path

from ml import stage_client


def main() -> int:
    hosted = stage_client.run_remotely("train", Path.cwd())
    if hosted is not None:
        return hosted
    from ml.stage import run_stage
    from ml.training import STAGE  # only now: importing it is most of a cold stage's time

    return run_stage(STAGE)


if __name__ == "__main__":
    sys.exit(main())
