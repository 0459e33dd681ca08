"""Stage `evaluate`: register the trained model and promote it when it beats the champion and a constant
predictor on the test set.

What `python -m ml.evaluate` (dvc.yaml) runs; the work is ml.gate's, done by a
warm stage host when one runs (ml.stage_host).
"""

import sys
from pathlib import Path

from ml import stage_client


def main() -> int:
    hosted = stage_client.run_remotely("evaluate", Path.cwd())
    if hosted is not None:
        return hosted
    from ml.gate import STAGE  # only now: importing it is most of a cold stage's time
    from ml.stage import run_stage

    return run_stage(STAGE)


if __name__ == "__main__":
    sys.exit(main())
