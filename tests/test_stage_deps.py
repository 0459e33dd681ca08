"""dvc.yaml lists, for each stage, every module of ours the stage's process imports, and no other:
a changed helper re-runs exactly the stages that use it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ml"
COMMAND = re.compile(r"^python -m (ml\.[a-z_]+)$")


def module_path(name: str) -> Path | None:
    """The file of module `name` of the ml package, or None when it is not one."""
    parts = name.split(".")
    if parts[0] != "ml" or len(parts) < 2:
        return None
    path = ROOT.joinpath(*parts).with_suffix(".py")
    return path if path.is_file() else None


def imported_modules(path: Path) -> set[str]:
    """Modules of the ml package that `path` imports anywhere in the file (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from ml import config` names a module, `from ml.schema import Schema` a name in one
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in candidates if module_path(name) is not None)
    return found


def transitive_imports(module: str) -> set[str]:
    """`module` and every module of the ml package it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(module_path(name)))
    return seen


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_module(stage: dict) -> str:
    match = COMMAND.match(stage["cmd"])
    assert match, f"unexpected stage command {stage['cmd']!r}"
    return match.group(1)


def code_deps(stage: dict) -> set[str]:
    return {dep for dep in stage["deps"] if dep.startswith("ml/")}


def test_the_import_reader_sees_plain_from_and_lazy_imports(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import ml.schema\nfrom ml import config, errors\nfrom ml.tables import read_csv\n"
                      "import json\n\ndef later():\n    from ml.export import OnnxModel\n")
    assert imported_modules(source) == {"ml.schema", "ml.config", "ml.errors", "ml.tables", "ml.export"}


def test_the_package_init_holds_no_code():
    # importing any ml module runs ml/__init__.py; it is left out of the deps because it is only
    # a docstring, and must stay one
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in tree.body)


def test_every_stage_runs_a_module_of_ours():
    assert set(stages()) == {"validate", "prepare", "train", "evaluate"}
    for stage in stages().values():
        assert module_path(stage_module(stage)) is not None


def test_each_stage_depends_on_exactly_the_code_it_imports():
    for name, stage in stages().items():
        imported = {str(module_path(m).relative_to(ROOT)) for m in transitive_imports(stage_module(stage))}
        listed = code_deps(stage)
        assert imported - listed == set(), f"stage `{name}` imports these but does not list them"
        assert listed - imported == set(), f"stage `{name}` lists these but does not import them"


def test_no_stage_imports_another_stage():
    commands = {stage_module(stage) for stage in stages().values()}
    for name, stage in stages().items():
        others = transitive_imports(stage_module(stage)) & (commands - {stage_module(stage)})
        assert others == set(), f"stage `{name}` imports the stage module(s) {sorted(others)}"
