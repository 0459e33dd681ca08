"""Champion against challenger on the same live requests: the served rows of the prediction log
joined with the challenger's shadow rows on (request id, row), and the feedback where it exists.

Quality on labelled rows: accuracy and F1 (binary: of the positive class; multi-class: macro) with
a 95 % paired bootstrap interval, and McNemar's exact test on the rows where exactly one model is
right. The verdict is the test's: better or worse at p < 0.05, else no detectable difference.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ml.schema import Schema

KEY = ["request_id", "row"]
SIGNIFICANCE = 0.05
BOOTSTRAP_DRAWS = 1_000
BLOCK_CELLS = 2_000_000  # row indices drawn at once
MIN_ROWS_FOR_DRIFT = 5


@dataclasses.dataclass
class Comparison:
    summary: dict
    disagreements: pd.DataFrame  # the rows where the labels differ, most different first


def output_columns(schema: Schema, classes: list) -> list[str]:
    if schema.target.is_binary:
        return ["label", "probability"]
    return ["label", *[f"probability_{c}" for c in classes]]


def paired(served: pd.DataFrame, shadow: pd.DataFrame, schema: Schema, outputs: list[str]) -> pd.DataFrame:
    """One row per request row both answered: features, `champion_*` and `challenger_*` outputs."""
    features = schema.feature_names
    left = served[[*KEY, "ts", "model_version", *features, *outputs]].rename(
        columns={"model_version": "champion_version", **{c: f"champion_{c}" for c in outputs}})
    right = shadow[[*KEY, "model_version", *outputs]].rename(
        columns={"model_version": "challenger_version", **{c: f"challenger_{c}" for c in outputs}})
    return left.merge(right, on=KEY, how="inner").sort_values("ts", kind="stable").reset_index(drop=True)


def _distance(pairs: pd.DataFrame, outputs: list[str]) -> np.ndarray:
    """How differently the two answered: the largest gap between their class probabilities."""
    probabilities = [c for c in outputs if c.startswith("probability")]
    gaps = [np.abs(pairs[f"champion_{c}"].to_numpy(float) - pairs[f"challenger_{c}"].to_numpy(float))
            for c in probabilities]
    return np.max(gaps, axis=0) if gaps else np.zeros(len(pairs))


def _histogram(values: np.ndarray, bins: int = 20) -> list[int]:
    counts, _ = np.histogram(values[~np.isnan(values)], bins=bins, range=(0.0, 1.0))
    return counts.tolist()


def _distributions(pairs: pd.DataFrame, schema: Schema, outputs: list[str]) -> dict:
    """The positive class's probability (binary) or the top class's (multi-class), in 20 bins."""
    out = {"bins": np.linspace(0, 1, 21).round(2).tolist(), "of": None}
    for side in ("champion", "challenger"):
        if schema.target.is_binary:
            values, out["of"] = pairs[f"{side}_probability"].to_numpy(float), "positive class"
        else:
            columns = [f"{side}_{c}" for c in outputs if c.startswith("probability")]
            values, out["of"] = pairs[columns].to_numpy(float).max(axis=1), "most probable class"
        out[side] = _histogram(values)
    return out


def _feature_shift(pairs: pd.DataFrame, disagree: np.ndarray, schema: Schema) -> list[dict]:
    """Per feature: do the disagreements differ from the agreements? KS test (numeric) or
    chi-squared (categorical); p < 0.05 marks the feature."""
    from scipy import stats

    if disagree.sum() < MIN_ROWS_FOR_DRIFT or (~disagree).sum() < MIN_ROWS_FOR_DRIFT:
        return []
    found = []
    for name in schema.feature_names:
        values = pairs[name]
        if name in schema.categorical:
            table = pd.crosstab(values.astype(str), disagree)
            p = float(stats.chi2_contingency(table)[1]) if table.shape[0] > 1 else 1.0
            test = "chi-squared"
        else:
            numbers = values.to_numpy(float)
            p = float(stats.ks_2samp(numbers[disagree], numbers[~disagree]).pvalue)
            test = "Kolmogorov-Smirnov"
        found.append({"feature": name, "test": test, "p_value": p, "drifted": p < SIGNIFICANCE})
    return sorted(found, key=lambda f: f["p_value"])


def _scores(truth: np.ndarray, predicted: np.ndarray, schema: Schema,
            draws: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Accuracy and F1 (binary: of the positive class; multi-class: macro) on the rows, or per
    bootstrap draw (`draws`: draws × rows of row indices), vectorised."""
    rows = np.arange(len(truth))[None, :] if draws is None else draws
    right = (truth == predicted)[rows]
    out = {"accuracy": right.mean(axis=1)}
    classes = [str(schema.target.positive)] if schema.target.is_binary else \
        [str(c) for c in schema.target.classes]
    f1 = []
    for klass in classes:
        said, was = (predicted == klass)[rows], (truth == klass)[rows]
        tp = (said & was).sum(axis=1)
        wrong = said.sum(axis=1) + was.sum(axis=1) - 2 * tp  # false positives + false negatives
        f1.append(np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
    out["f1"] = np.mean(f1, axis=0)
    return out


def _interval(draws: np.ndarray) -> list[float]:
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def _bootstrap(truth: np.ndarray, answers: dict[str, np.ndarray], schema: Schema,
               rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Each side's figures on the same resampled rows, draw by draw (in blocks: memory stays at
    about BLOCK_CELLS cells however many rows are labelled)."""
    n = len(truth)
    block = max(1, min(BOOTSTRAP_DRAWS, BLOCK_CELLS // n))
    found: dict[str, list[dict]] = {side: [] for side in answers}
    for start in range(0, BOOTSTRAP_DRAWS, block):
        draws = rng.integers(0, n, (min(block, BOOTSTRAP_DRAWS - start), n))
        for side, predicted in answers.items():
            found[side].append(_scores(truth, predicted, schema, draws))
    return {side: {m: np.concatenate([part[m] for part in parts]) for m in ("accuracy", "f1")}
            for side, parts in found.items()}


def labelled_quality(pairs: pd.DataFrame, labels: pd.DataFrame, schema: Schema, seed: int = 0) -> dict:
    """Both models on exactly the labelled rows of the window, with 95 % intervals (paired bootstrap)
    and McNemar's exact test of the label difference."""
    from scipy import stats

    joined = pairs.merge(labels[[*KEY, "label"]].rename(columns={"label": "true_label"}), on=KEY)
    n = len(joined)
    out: dict = {"labelled_rows": n}
    if n == 0:
        return out
    truth = joined["true_label"].astype(str).to_numpy()
    answers = {side: joined[f"{side}_label"].astype(str).to_numpy() for side in ("champion", "challenger")}
    resampled = _bootstrap(truth, answers, schema, np.random.default_rng(seed))
    for side, predicted in answers.items():
        scores = _scores(truth, predicted, schema)
        out[side] = {metric: {"value": float(value[0]), "ci95": _interval(resampled[side][metric])}
                     for metric, value in scores.items()}
    difference = {m: resampled["challenger"][m] - resampled["champion"][m] for m in ("accuracy", "f1")}
    out["difference_ci95"] = {m: _interval(d) for m, d in difference.items()}  # challenger minus champion
    only_champion = int(np.sum((answers["champion"] == truth) & (answers["challenger"] != truth)))
    only_challenger = int(np.sum((answers["challenger"] == truth) & (answers["champion"] != truth)))
    discordant = only_champion + only_challenger
    p = float(stats.binomtest(only_challenger, discordant, 0.5).pvalue) if discordant else 1.0
    out["mcnemar"] = {"only_champion_right": only_champion, "only_challenger_right": only_challenger,
                      "p_value": p}
    return out


def verdict(quality: dict, compared: int) -> dict:
    n = quality.get("labelled_rows", 0)
    if compared == 0:
        return {"outcome": "no data", "text": "No live request was scored by both models in this window."}
    if n == 0:
        return {"outcome": "no labels", "text": f"No labelled rows yet among {compared:,} compared live "
                                                "rows: send feedback to judge the two."}
    test = quality["mcnemar"]
    if test["p_value"] < SIGNIFICANCE:
        better = test["only_challenger_right"] > test["only_champion_right"]
        outcome = "challenger better" if better else "challenger worse"
    else:
        outcome = "no detectable difference"
    return {"outcome": outcome, "text": f"{outcome.capitalize()} on {n:,} labelled live rows "
                                        f"(McNemar p = {test['p_value']:.3g})."}


def compare(served: pd.DataFrame, shadow: pd.DataFrame, labels: pd.DataFrame, schema: Schema, *,
            classes: list, top: int = 20) -> Comparison:
    outputs = output_columns(schema, classes)
    pairs = paired(served, shadow, schema, outputs)
    disagree = (pairs["champion_label"].astype(str) != pairs["challenger_label"].astype(str)).to_numpy()
    pairs["difference"] = _distance(pairs, outputs)
    quality = labelled_quality(pairs, labels, schema)
    summary = {
        "compared_rows": len(pairs),
        "champion_versions": sorted(pairs["champion_version"].astype(str).unique().tolist()),
        "challenger_versions": sorted(pairs["challenger_version"].astype(str).unique().tolist()),
        "agreement": float(1 - disagree.mean()) if len(pairs) else None,
        "disagreeing_rows": int(disagree.sum()),
        "probabilities": _distributions(pairs, schema, outputs),
        "disagreement_features": _feature_shift(pairs, disagree, schema),
        "quality": quality,
        "verdict": verdict(quality, len(pairs)),
    }
    different = pairs[disagree].sort_values("difference", ascending=False, kind="stable")
    summary["top_disagreements"] = _records(different.head(top))
    return Comparison(summary, different)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in frame.drop(columns=["ts"]).to_dict(orient="records")]
