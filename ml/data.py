"""Stage `data`: make sure the raw data is in the workspace, tracked by DVC and pushed to the remote.

Runs in the project (OPCON_PROJECT_DIR, else this checkout); the work is ml.raw_data's.
"""

import sys

from ml import config
from ml.raw_data import STAGE, ensure_raw_data
from ml.stage import run_stage

__all__ = ["ensure_raw_data", "main"]  # ensure_raw_data: for callers written before ml.raw_data


def main() -> int:
    return run_stage(STAGE, config.project_dir())


if __name__ == "__main__":
    sys.exit(main())
