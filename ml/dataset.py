"""Switch the project to a labelled table of your own in one command (`make dataset`).

    python -m ml.dataset use my_table.csv --target label [--id-column row_id] [--no-train]

Checks the file first (a readable CSV, the target with 2 to 50 classes, the ID columns there, at least
one feature) and changes nothing when it is not one. Then: the file goes to data/raw/, params.yaml
gets its drafted schema, `dataset.raw/name/description`, a registry model name of its own (comments
and every other setting kept), the previous data set's DVC pointer is removed (retrains would try
to check it out), the file is tracked and pushed to the instance's remote (set up when missing),
and a first champion is trained. Running it again with the same file changes nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ml import config, registry
from ml import params as params_module
from ml.errors import DataError, PipelineError
from ml.schema import infer_schema
from ml.versioning import add_and_push, ensure_project, push, repro

MAX_CLASSES = 50  # a target with more distinct values is not a class label
RAW_DIR = Path("data") / "raw"
REVIEW = ("schema.features: description and unit of each column, and the ranges (drafted from the "
          "data, widened by 10 %)", "schema.target.labels: what each class means, in words",
          "dataset.description and dataset.intended_use: what the data is and what the answers are "
          "for (the model and dataset cards)")


def read_table(path: Path, target: str, id_columns: list[str]) -> pd.DataFrame:
    """The table, or DataError saying why it is not a labelled CSV (nothing is changed before)."""
    if not path.is_file():
        raise DataError(f"`{path}` does not exist")
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            header = next(csv.reader(io.StringIO(stream.read(1 << 20))), [])
        frame = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"`{path}` is not a UTF-8 CSV file (binary or another encoding)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as error:
        raise DataError(f"`{path}` is not a readable CSV file: {str(error)[:200]}") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError("; ".join(f"duplicate column `{name}`" for name in repeated))
    missing = [name for name in [target, *id_columns] if name not in frame.columns]
    if missing:
        raise DataError(f"`{path}` has no column {', '.join(f'`{m}`' for m in missing)}; its columns: "
                        f"{', '.join(frame.columns[:20])}")
    labels = frame[target]
    if labels.isna().any():
        raise DataError(f"target `{target}` is empty in {int(labels.isna().sum())} row(s): every row "
                        "needs its label")
    classes = labels.nunique()
    if not 2 <= classes <= MAX_CLASSES:
        raise DataError(f"target `{target}` has {classes} distinct value(s): a label needs 2 to "
                        f"{MAX_CLASSES} classes (is it the right column?)")
    if len(frame.columns) - 1 - len(id_columns) < 1:
        raise DataError(f"`{path}` has no feature column besides the target and the IDs")
    return frame


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"


def updated_params(raw: CommentedMap, *, destination: str, name: str, schema: dict) -> CommentedMap:
    """params.yaml as parsed (comments kept), switched to the new table."""
    dataset = raw["dataset"]
    dataset["name"] = name
    dataset["description"] = f"Labelled table `{Path(destination).name}` (describe it here)."
    dataset["raw"] = destination
    for key in ("generator", "intended_use", "limits"):  # the previous data set's words
        dataset.pop(key, None)
    raw["schema"] = _commented_schema(schema)
    raw["registry"]["model_name"] = f"{name}-classifier"  # one model per data set: never compared
    raw["registry"]["experiment"] = name
    return raw


def _commented_schema(schema: dict) -> CommentedMap:
    block = CommentedMap(schema)
    features = []
    for feature in schema["features"]:
        entry = CommentedMap(feature)
        entry.yaml_add_eol_comment("fill in: what the column means", "description")
        if "unit" in entry:
            entry.yaml_add_eol_comment("fill in, e.g. K, rpm, Nm (or leave empty)", "unit")
        features.append(entry)
    block["features"] = features
    block["target"] = CommentedMap(schema["target"])
    block["target"].yaml_add_eol_comment("fill in: each class in words", "labels")
    return block


def use(project: Path, csv_path: Path, target: str, id_columns: list[str], *, train: bool = True,
        say=print) -> None:
    frame = read_table(csv_path, target, id_columns)
    name = slug(csv_path.stem)
    destination = (RAW_DIR / f"{name}.csv").as_posix()
    yaml = YAML()  # round-trip: the comments and order of params.yaml stay
    yaml.width = 110
    params_path = project / "params.yaml"
    raw = yaml.load(params_path.read_text())
    previous = params_module.parse(yaml_to_plain(raw)).dataset.raw
    switched = updated_params(raw, destination=destination, name=name,
                              schema=infer_schema(frame, target, id_columns))
    params_module.parse(yaml_to_plain(switched))  # a draft that does not validate changes nothing

    target_path = project / destination
    target_path.parent.mkdir(parents=True, exist_ok=True)
    if csv_path.resolve() != target_path.resolve():
        shutil.copyfile(csv_path, target_path)
    with open(params_path, "w") as stream:
        yaml.dump(switched, stream)
    if previous != destination:
        (project / f"{previous}.dvc").unlink(missing_ok=True)
        say(f"removed the pointer of the previous data set ({previous}.dvc)")
    ensure_project(project)
    add_and_push(project, destination)
    say(f"{destination}: {len(frame)} rows, tracked by DVC and pushed to {config.dvc_remote_url()}")
    params = params_module.load(project)
    model = params.registry.model_name
    if train and registry.champion(model) is None:
        repro(project, "--force")
        push(project)
    champion = registry.champion(model)
    if champion is not None:
        say(f"champion: {model} version {champion.version}")
    say("review in params.yaml (then `dvc repro` when a range or a label changes):")
    for line in REVIEW:
        say(f"  - {line}")


def yaml_to_plain(node):
    """A ruamel tree as plain dicts and lists (what pydantic reads)."""
    if isinstance(node, dict):
        return {key: yaml_to_plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [yaml_to_plain(value) for value in node]
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["use"])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--target", required=True, help="the column holding the label")
    parser.add_argument("--id-column", action="append", default=[], help="a column that names a row")
    parser.add_argument("--no-train", action="store_true", help="do not train a first champion")
    args = parser.parse_args(argv)
    config.quiet_third_parties()
    try:
        use(config.project_dir(), args.csv.resolve(), args.target, args.id_column, train=not args.no_train)
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
