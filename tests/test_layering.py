"""Dependencies point one way (README "Layout"): flows -> stages (tasks/*.py) -> the shared library
(tasks/core, engines, data, methods) -> judges -> tasks.core; no import cycle anywhere; records, config
and judges import no heavy library."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "vllm", "prefect", "mlflow", "transformers", "datasets", "peft"]
LIBRARY = ("tasks.core", "tasks.engines", "tasks.data", "tasks.methods")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in ("flows", "tasks", "judges") for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


GRAPH = {name: _imports(path, _project_modules()) - {name} for name, path in _project_modules().items()}
STAGES = {n for n in GRAPH if n.startswith("tasks.") and n.count(".") == 1 and not n.startswith(LIBRARY)}


def _layer(name: str) -> str:
    if name.startswith("flows"):
        return "flow"
    if name in STAGES:
        return "stage"
    if name.startswith("judges"):
        return "judge"
    return "library"


def test_the_stage_modules_are_the_stages():
    assert {"tasks.generate", "tasks.judge", "tasks.train", "tasks.merge", "tasks.benchmark",
            "tasks.load_examples"} <= STAGES


def test_imports_point_one_way():
    allowed = {"flow": {"flow", "stage", "library", "judge"}, "stage": {"library", "judge"},
               "library": {"library", "judge"}, "judge": {"judge", "library"}}
    wrong = [(a, b) for a, deps in GRAPH.items() for b in deps
             if _layer(b) not in allowed[_layer(a)]
             or (_layer(a) == "judge" and _layer(b) == "library" and not b.startswith("tasks.core"))]
    assert not wrong, wrong


def test_the_core_imports_no_stage_flow_or_engine():
    core = {a: deps for a, deps in GRAPH.items() if a.startswith("tasks.core")}
    assert core and not [(a, b) for a, deps in core.items() for b in deps
                         if b.startswith(("flows", "tasks.engines")) or b in STAGES]


def test_no_import_cycle():
    """Depth-first search over every import, lazy ones included (flows/cli.py <-> experiment.py was one)."""
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(GRAPH[name]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_light_modules_import_no_heavy_library():
    code = ("import sys, json; import judges, tasks.core.records, tasks.core.config_file, tasks.core.cache, "
            "tasks.data, tasks.methods.strategies, tasks.engines.models, tasks.engines.backends; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_judges_import_neither_prefect_nor_torch():
    for path in (ROOT / "judges").glob("*.py"):
        heavy = {n.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                 for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                           [node.module or ""] if isinstance(node, ast.ImportFrom) else [])}
        assert not heavy & {"prefect", "torch", "mlflow", "flows"}, path
