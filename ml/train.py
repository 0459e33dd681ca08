"""Stage `train`: fit the scikit-learn pipeline, choose the threshold, log everything to MLflow.
"""

import sys

from ml import stage_client


def work():
    from ml.training import STAGE  # only now, and only when no warm host takes the stage: most of its time

    return STAGE


if __name__ == "__main__":
    sys.exit(stage_client.main("train", work))
