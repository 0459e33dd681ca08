"""Stage `validate`: a Great Expectations suite generated from the schema, run on the raw data.

Fails (exit 1) with one readable line per failed expectation; always writes data/validation.json.

What `python -m ml.validate` (dvc.yaml) runs; the work is ml.validation's, done by a
warm stage host when one runs (ml.stage_host).
"""

import sys
from pathlib import Path

from ml import stage_client


def main() -> int:
    hosted = stage_client.run_remotely("validate", Path.cwd())
    if hosted is not None:
        return hosted
    from ml.stage import run_stage
    from ml.validation import STAGE  # only now: importing it is most of a cold stage's time

    return run_stage(STAGE)


if __name__ == "__main__":
    sys.exit(main())
