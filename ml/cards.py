"""Dataset and model cards: Markdown generated from the data, the params and the measured results."""

from __future__ import annotations

import pandas as pd

from ml.params import Params


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _column_rows(frame: pd.DataFrame, params: Params) -> list[list]:
    rows = []
    for feature in params.schema.features:
        column = frame[feature.name]
        if feature.type == "number":
            seen = f"{column.min():g} to {column.max():g} (mean {column.mean():.4g})"
            allowed = f"{feature.min:g} to {feature.max:g}" if feature.min is not None and \
                feature.max is not None else "any"
        else:
            shares = column.value_counts(normalize=True)
            seen = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
            allowed = ", ".join(feature.categories)
        rows.append([f"`{feature.name}`", feature.type, feature.unit or "", allowed, seen,
                     feature.description])
    return rows


def dataset_card(frame: pd.DataFrame, params: Params, version: str, split_rows: dict) -> str:
    schema = params.schema
    target = schema.target
    balance = frame[target.name].value_counts(normalize=True).sort_index()
    generator = params.dataset.generator
    source = (f"Generated offline (seed {generator.seed}, {generator.rows} rows)."
              if generator else "Provided as a CSV file.")
    return "\n\n".join([
        f"# Dataset card: {params.dataset.name}",
        params.dataset.description.strip(),
        "## Source\n" + source + f"\n\nFile: `{params.dataset.raw}`, data version (DVC md5) `{version}`,"
        f" {len(frame)} rows.",
        "## Columns\n" + _table(["column", "type", "unit", "allowed", "observed", "meaning"],
                                _column_rows(frame, params)),
        f"## Target `{target.name}`\n" + _table(
            ["class", "meaning", "share"],
            [[k, target.label(k), f"{v:.2%}"] for k, v in balance.items()]),
        "## Other columns\n"
        f"- IDs (dropped before training): {', '.join(f'`{c}`' for c in schema.id_columns) or 'none'}\n"
        f"- Label leaks (never features): {', '.join(f'`{c}`' for c in schema.leak_columns) or 'none'}",
        "## Split\n" + ", ".join(f"{name}: {rows} rows" for name, rows in split_rows.items())
        + f" (stratified on `{target.name}`, seed {params.split.seed}).",
        "## Known limits\n" + "\n".join(f"- {line}" for line in _limits(params, balance)),
    ]) + "\n"


RARE_SHARE = 0.10  # a class below this share of the rows is called rare


def _limits(params: Params, balance: pd.Series) -> list[str]:
    target = params.schema.target
    lines = []
    rarest = balance.idxmin()
    if balance[rarest] < RARE_SHARE:
        lines.append(f"The class {target.label(rarest)} is rare ({balance[rarest]:.1%} of the rows): "
                     "metrics on it move a lot between splits; prefer PR AUC.")
    lines.append("Data outside the allowed ranges is rejected by validation, not extrapolated.")
    return lines + list(params.dataset.limits)


def model_card(*, params: Params, run_id: str, data_version: str, threshold: float | None,
               metrics: dict, emissions: dict, version: str | None = None,
               decision: dict | None = None) -> str:
    schema = params.schema
    metric_rows = sorted({k.split("_", 1)[1] for k in metrics if k.startswith(("val_", "test_"))})
    table = _table(["metric", "validation", "test"],
                   [[m, f"{metrics.get('val_' + m, float('nan')):.4f}",
                     f"{metrics.get('test_' + m, float('nan')):.4f}"] for m in metric_rows])
    sections = [
        f"# Model card: {params.registry.model_name}" + (f" version {version}" if version else ""),
        "## Intended use\n"
        f"Predicts `{schema.target.name}` "
        f"({', '.join(schema.target.label(c) for c in schema.target.classes)})"
        f" for one {params.dataset.name} record at a time or in batches. "
        + (params.dataset.intended_use.strip() or "It supports a decision; it does not make one."),
        "## Model\n"
        f"- Estimator: `{params.train.estimator}` with {params.train.estimator_params or 'defaults'}, "
        f"class weight `{params.train.class_weight}`, seed {params.train.seed}\n"
        f"- Features: {', '.join(f'`{f}`' for f in schema.feature_names)}\n"
        f"- MLflow run: `{run_id}`",
        "## Data\n"
        f"- Data set: {params.dataset.name}, data version (DVC md5) `{data_version}`\n"
        f"- Split: test {params.split.test_size:.0%}, validation {params.split.validation_size:.0%}, "
        f"seed {params.split.seed}",
        "## Metrics\n" + table,
        (f"## Decision threshold\nPositive class when its probability is at least **{threshold:.4f}** "
         f"(rule `{params.train.threshold.rule}` on the validation split)." if threshold is not None
         else "## Decision rule\nMost probable class (multi-class target)."),
        "## Training emissions\n"
        f"{emissions.get('emissions_kg', float('nan')):.3g} kg CO2eq, "
        f"{emissions.get('energy_kwh', float('nan')):.3g} kWh in {emissions.get('duration_s', 0):.1f} s "
        f"({emissions.get('mode', 'unknown')}, country {params.emissions.country_iso_code}).",
    ]
    if decision:
        sections.append("## Promotion\n" + f"**{decision['outcome']}**: {decision['reason']}")
    sections.append(
        "## Caveats\n"
        "- Trained on data that passed validation; inputs outside the schema's ranges are refused.\n"
        "- Watch the drift reports: performance is only known for data like the training data."
        + ("" if threshold is None else
           f"\n- The threshold trades missed `{schema.target.label(schema.target.positive)}` cases "
           "against false positives; change the rule in params.yaml."))
    return "\n\n".join(sections) + "\n"
