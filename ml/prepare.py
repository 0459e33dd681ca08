"""Stage `prepare`: a deterministic stratified train / validation / test split, and the dataset card.

Refuses data whose validation result is missing, failed, or was made for other bytes.
"""

import sys

from ml import stage_client


def work():
    from ml.splits import STAGE  # only now, and only when no warm host takes the stage: most of its time

    return STAGE


if __name__ == "__main__":
    sys.exit(stage_client.main("prepare", work))
