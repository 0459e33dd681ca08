"""Why the model said so: each record's feature contributions (SHAP values) towards the class it
was given, computed from the served pipeline itself, never from a surrogate.

Tree models (random forest, gradient boosting) use SHAP's TreeExplainer (exact, path-dependent, no
background data); other models SHAP's permutation explainer over a background of training-like
rows. The explainer works on the preprocessed columns; a one-hot category's columns are summed back
into its feature, which keeps the sum: base value + Σ contributions = the model's output for the
explained class (a probability for a forest; log-odds for gradient boosting and linear models).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ml.schema import Schema

TREE_MODELS = ("RandomForestClassifier", "HistGradientBoostingClassifier", "ExtraTreesClassifier",
               "GradientBoostingClassifier", "DecisionTreeClassifier")


@dataclasses.dataclass
class Explained:
    base_values: np.ndarray  # (rows,) of the explained class
    contributions: np.ndarray  # (rows, features), in the schema's feature order
    outputs: np.ndarray  # (rows,) base + Σ contributions: the model's output being explained
    output: str  # "probability" or "log-odds"


class Explainer:
    def __init__(self, pipeline, schema: Schema, background: pd.DataFrame | None = None):
        import shap

        self.schema, self.pipeline = schema, pipeline
        self.preprocess, self.model = pipeline.named_steps["preprocess"], pipeline.named_steps["model"]
        self.kind = type(self.model).__name__
        self.owner = self._owners()
        if self.kind in TREE_MODELS:
            self.explainer = shap.TreeExplainer(self.model)
            self.method = "shap.TreeExplainer"
            self.output = "probability" if self.kind == "RandomForestClassifier" else "log-odds"
        else:
            if background is None:
                raise ValueError(f"a {self.kind} is explained over background rows: none given")
            masker = shap.maskers.Independent(self.preprocess.transform(background), max_samples=100)
            self.explainer = shap.PermutationExplainer(self._log_odds, masker)
            self.method, self.output = "shap.PermutationExplainer", "log-odds"

    def _owners(self) -> np.ndarray:
        """For each preprocessed column, the index of the schema feature it comes from."""
        names = self.schema.feature_names
        owners = []
        for transformer, columns, _ in [(n, c, t) for n, t, c in self.preprocess.transformers_
                                        if n != "remainder"]:
            fitted = self.preprocess.named_transformers_[transformer]
            if hasattr(fitted, "categories_"):
                owners += [names.index(c) for c, cats in zip(columns, fitted.categories_, strict=True)
                           for _ in cats]
            else:
                owners += [names.index(c) for c in columns]
        return np.asarray(owners)

    def _log_odds(self, transformed: np.ndarray) -> np.ndarray:
        proba = np.clip(self.model.predict_proba(transformed), 1e-12, 1 - 1e-12)
        return np.log(proba / (1 - proba))

    def explain(self, frame: pd.DataFrame, class_index: np.ndarray) -> Explained:
        """Contributions towards class `class_index[i]` for each row of `frame` (schema features)."""
        transformed = self.preprocess.transform(frame[self.schema.feature_names])
        found = self.explainer(transformed) if self.method.endswith("TreeExplainer") else \
            self.explainer(transformed, silent=True)
        values, base = np.asarray(found.values), np.asarray(found.base_values)
        rows = np.arange(len(frame))
        if values.ndim == 3:  # (rows, columns, classes)
            values, base = values[rows, :, class_index], base.reshape(len(frame), -1)[rows, class_index]
        else:  # one output, class 1's (binary gradient boosting): class 0's is its negative
            sign = np.where(class_index == 1, 1.0, -1.0)
            values, base = values * sign[:, None], np.broadcast_to(base.ravel(), (len(frame),)) * sign
        per_feature = np.zeros((len(frame), len(self.schema.feature_names)))
        np.add.at(per_feature.T, self.owner, values.T)
        base = np.broadcast_to(np.asarray(base, dtype=float), (len(frame),)).copy()
        return Explained(base, per_feature, base + per_feature.sum(axis=1), self.output)


def reasons(explained: Explained, frame: pd.DataFrame, schema: Schema, class_names: list[str],
            top: int) -> list[list[dict]]:
    """Per row, its `top` strongest contributions, most first, each with a sentence."""
    features = schema.features
    out = []
    for i in range(len(frame)):
        order = np.argsort(-np.abs(explained.contributions[i]), kind="stable")[:top]
        row = []
        for rank, j in enumerate(order):
            feature, contribution = features[j], float(explained.contributions[i, j])
            value = frame.iloc[i][feature.name]
            value = value.item() if isinstance(value, np.generic) else value
            shown = value if feature.type == "category" else f"{float(value):g}"
            unit = f" {feature.unit}" if feature.unit and feature.type != "category" else ""
            direction = "pushed towards" if contribution > 0 else "pulled away from"
            most = " most" if rank == 0 else ""
            row.append({"feature": feature.name, "value": value, "contribution": contribution,
                        "text": f"{feature.name} = {shown}{unit} {direction} “{class_names[i]}”{most}"})
        out.append(row)
    return out
