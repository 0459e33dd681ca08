"""Stage `prepare`: a deterministic stratified train / validation / test split, and the dataset card.

Refuses data whose validation result is missing, failed, or was made for other bytes.

What `python -m ml.prepare` (dvc.yaml) runs; the work is ml.splits's, done by a
warm stage host when one runs (ml.stage_host).
"""

import sys
from pathlib import Path

from ml import stage_client


def main() -> int:
    hosted = stage_client.run_remotely("prepare", Path.cwd())
    if hosted is not None:
        return hosted
    from ml.splits import STAGE  # only now: importing it is most of a cold stage's time
    from ml.stage import run_stage

    return run_stage(STAGE)


if __name__ == "__main__":
    sys.exit(main())
