"""Stage `validate`: a Great Expectations suite generated from the schema, run on the raw data.

Fails (exit 1) with one readable line per failed expectation; always writes data/validation.json.
"""

import sys

from ml import stage_client


def work():
    from ml.validation import STAGE  # only now, and only when no warm host takes the stage: most of its time

    return STAGE


if __name__ == "__main__":
    sys.exit(stage_client.main("validate", work))
