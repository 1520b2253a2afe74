"""The package's shape: few top-level modules, no import circle, stages that share files and never internals, the
config schema inside the package, and every documentation reference resolving to a file of the repository."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nextrl
from nextrl.config import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(nextrl.__file__).parent
# Names the summary and cross-experiment stages write (outputs, not references to documentation).
WRITTEN_TABLES = {"table.md", "ablation.md", "heldout.md", "probe.md", "findings.md", "experiments.md"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The nextrl modules a file imports, anywhere in it (module level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("nextrl.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nextrl"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {target for target in imported_modules(path) if target in modules} for name, path in modules.items()}


def test_the_top_level_holds_at_most_twelve_modules():
    modules = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert len(modules) <= 12, modules


def test_no_import_circle():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in graph[name]:
            if target.startswith(name + "."):  # a package's face handing on its own modules
                continue
            assert state.get(target) != "open", " → ".join([*path, name, target])
            if target not in state:
                visit(target, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_no_stage_imports_another_stage():
    for path in (PACKAGE / "stages").glob("*.py"):
        stages = {name for name in imported_modules(path) if name.startswith("nextrl.stages.")}
        assert not stages, f"{path.name} imports {sorted(stages)}"


def test_analysis_imports_no_torch():
    for path in (PACKAGE / "analysis").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {name for name in names if name.split(".")[0] in ("torch", "transformers", "peft")}, path.name


def test_the_schema_ships_inside_the_package_and_validates_from_anywhere(tmp_path: Path):
    assert SCHEMA_PATH.parent == PACKAGE
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert SCHEMA_PATH.name in package_data["nextrl"]
    (tmp_path / "config.yaml").write_text((REPO / "config" / "test.yaml").read_text())
    check = "from pathlib import Path; from nextrl.config import load_config; print(load_config(Path('config.yaml'))"
    check += "['rl']['lr'])"
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) == 2.0e-3


def test_every_documentation_reference_resolves_to_a_file_of_the_repository():
    """Docstrings, comments, rules and configs point at docs/… (or README.md) files that exist, and at sections that
    exist in them (a quoted heading after the file name)."""
    tracked = subprocess.run(["git", "ls-files", "src", "rules", "workflow", "bench", "tests", "config", "Makefile"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    reference = re.compile(r"(?<![\w/.-])([\w./-]+\.md)\b(?:, \"([^\"]+)\")?")
    problems = []
    for name in tracked:
        path = REPO / name
        if not path.is_file() or path.suffix not in (".py", ".smk", ".yaml", ".rst", ""):
            continue
        text = path.read_text()
        for match in reference.finditer(text):
            target, section = match.group(1), match.group(2)
            if Path(target).name in WRITTEN_TABLES:
                continue
            document = REPO / target
            if not document.is_file():
                problems.append(f"{name}: {target}")
            elif section:
                headings = " ".join(line for line in document.read_text().splitlines() if line.startswith("#"))
                if " ".join(section.split()) not in " ".join(headings.split()):
                    problems.append(f'{name}: {target}, "{section}"')
    assert not problems, problems
