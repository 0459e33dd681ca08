"""A separate DVC project running this checkout's pipeline: for a second data set, tests, benchmarks.

    python -m ml.workspace /srv/other-line      # then edit its params.yaml, `dvc repro` there
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import yaml

from ml.config import REPO_ROOT

IGNORED_OUTPUTS = ("/data/prepared/", "/data/validation.json", "/data/dataset_card.md", "/models/",
                   "/metrics/")


def create(path: Path, params: dict | None = None) -> Path:
    """Make `path` a project: this checkout's stages (ml/ linked in), dvc.yaml, and params.yaml."""
    path.mkdir(parents=True, exist_ok=False)
    os.symlink(REPO_ROOT / "ml", path / "ml", target_is_directory=True)
    shutil.copy(REPO_ROOT / "dvc.yaml", path / "dvc.yaml")
    (path / ".gitignore").write_text("\n".join(IGNORED_OUTPUTS) + "\n")
    if params is None:
        shutil.copy(REPO_ROOT / "params.yaml", path / "params.yaml")
    else:
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    try:
        create(args.path.resolve())
    except FileExistsError:
        print(f"{args.path} exists already", file=sys.stderr)
        return 1
    print(f"project at {args.path}: edit its params.yaml, then `python -m ml.data` and `dvc repro` "
          "there (set OPCON_HOME to give it its own state)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
