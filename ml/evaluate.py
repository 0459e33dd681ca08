"""Stage `evaluate`: register the trained model and promote it when it beats the champion and a constant
predictor on the test set.
"""

import sys

from ml import stage_client


def work():
    from ml.gate import STAGE  # only now, and only when no warm host takes the stage: most of its time

    return STAGE


if __name__ == "__main__":
    sys.exit(stage_client.main("evaluate", work))
