"""`dvc.yaml`'s code dependencies cover what each stage really runs: the import closure of its module, computed
from the source, must lie inside the stage's declared deps (so a code change can never leave a stage stale
without DVC noticing), and every declared code dep must be in that closure (so a change elsewhere does not
rerun a stage needlessly, e.g. a Stage II network edit retraining Stage I)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "extractors")


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a package's __init__.py), None for a third-party module."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _imports(path: Path) -> set[str]:
    """Dotted names a module imports anywhere (function-level imports included: they run too)."""
    found: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_closure(module: str) -> set[Path]:
    """Every project file that importing `module` executes."""
    todo, seen, files = [module], set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        todo += _parents(name) + sorted(_imports(path))
    return {f for f in files if not _docstring_only(f)}


def _docstring_only(path: Path) -> bool:
    """A package `__init__.py` holding only a docstring: importing it runs nothing that could change an output."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def stage_code(dvc_yaml: dict) -> dict[str, tuple[str, list[str]]]:
    """{stage: (its module, its declared deps)}, foreach stages expanded per item (deps are the same for each)."""
    out = {}
    for name, stage in dvc_yaml["stages"].items():
        body = stage.get("do", stage)
        module = body["cmd"].split()[2]  # `python -m pipeline.<stage> ...`
        out[name] = (module, [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])])
    return out


def coverage_problems(dvc_yaml: dict) -> list[str]:
    """What is wrong with the declared code deps of each stage (empty: nothing)."""
    problems = []
    for stage, (module, deps) in stage_code(dvc_yaml).items():
        closure = {f.relative_to(ROOT).as_posix() for f in import_closure(module)}
        code_deps = [d for d in deps if d.split("/")[0] in PACKAGES]
        for f in sorted(closure):
            if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in code_deps):
                problems.append(f"{stage}: runs {f}, which no dep covers")
        for d in code_deps:
            if not any(f == d or f.startswith(d.rstrip("/") + "/") for f in closure):
                problems.append(f"{stage}: declares {d}, which it never imports")
    return problems


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_stage_declares_exactly_the_code_it_imports(dvc_yaml):
    assert coverage_problems(dvc_yaml) == []


def test_a_removed_dependency_is_caught(dvc_yaml):
    """The check can fail: drop one code dep of each stage in turn and it names the uncovered file."""
    for stage, body in dvc_yaml["stages"].items():
        body = body.get("do", body)
        code = [d for d in body["deps"] if isinstance(d, str) and d.split("/")[0] in PACKAGES]
        assert code, f"{stage} declares no code"
        broken = yaml.safe_load(yaml.safe_dump(dvc_yaml))
        target = broken["stages"][stage].get("do", broken["stages"][stage])
        target["deps"].remove(code[0])
        assert any(p.startswith(f"{stage}: runs ") for p in coverage_problems(broken)), (stage, code[0])


def test_the_closure_follows_imports_inside_functions_and_every_registered_backend():
    extract = {f.relative_to(ROOT).as_posix() for f in import_closure("pipeline.extract")}
    assert {"extractors/backends/simulated.py", "extractors/backends/holistic.py", "pipeline/videoio.py"} <= extract
    stage1 = {f.relative_to(ROOT).as_posix() for f in import_closure("pipeline.train_pose2gloss")}
    assert "pipeline/nets/video2pose.py" not in stage1 and "pipeline/corpus/synthetic.py" not in stage1


def test_no_stage_module_imports_another(dvc_yaml):
    """Stages share library modules, never each other: a stage module runs only its own stage."""
    modules = {module for module, _ in stage_code(dvc_yaml).values()}
    stage_files = {module_file(m).relative_to(ROOT).as_posix(): m for m in modules}
    for module in modules:
        closure = {f.relative_to(ROOT).as_posix() for f in import_closure(module)}
        others = sorted(stage_files[f] for f in closure & set(stage_files) if stage_files[f] != module)
        assert not others, f"{module} imports the stage modules {others}"
