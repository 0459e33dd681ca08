"""Where the pipeline's stages keep their outputs, relative to the project (dvc.yaml says the same)."""

VALIDATION_REPORT = "data/validation.json"
PREPARED = "data/prepared"
DATASET_CARD = "data/dataset_card.md"
TRAIN_RUN = "models/train_run.json"
TRAIN_METRICS = "metrics/train.json"
EVALUATE_METRICS = "metrics/evaluate.json"
