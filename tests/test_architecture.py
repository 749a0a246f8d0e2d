"""The dependency rules of the layout, checked on the source (an AST walk, no imports executed).

- ``metrics/`` depends on torch, torchmetrics, numpy/scipy (numba for the compiled BOP kernels), the standard
  library and itself: a user can take the metrics into a training loop without the harness or the methods.
- ``methods/`` reads no dataset or results files: no import of the readers (``bench.data``, ``bench.predictions``);
  what a method needs from the data arrives through the Sample or the dataset's info object.
- No import cycles between the project's modules, counting every import in a file (module level, inside
  functions, under ``TYPE_CHECKING``): a cycle hidden in a function is still a cycle a reader has to untangle.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods", "metrics")
METRICS_MAY_IMPORT = {"torch", "torchmetrics", "numpy", "scipy", "numba", "metrics"}
READERS = ("bench.data", "bench.predictions")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``path`` imports (``from a.b import c`` counts ``a.b.c`` when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(p, modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as the list of its modules (None when it has none); package ``__init__``
    re-exports are edges like any other."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_checker_finds_a_cycle_and_resolves_relative_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    pkg = REPO / "bench" / "data" / "coco.py"
    assert "bench.errors" in imports_of(pkg, project_modules())


def test_no_import_cycles():
    graph = import_graph()
    # packages import their submodules to register them; a submodule importing its own package's
    # __init__ back is the registration pattern, not a design cycle, so only module -> module edges count
    graph = {m: {n for n in deps if not (m.startswith(n + ".") and (REPO / n.replace(".", "/") / "__init__.py").exists())}
             for m, deps in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def top_level_imports(path: Path) -> set[str]:
    """First components of every absolute import in ``path`` (relative imports stay inside the package)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_metrics_import_only_torch_numpy_scipy_and_themselves():
    bad = {}
    for p in sorted((REPO / "metrics").rglob("*.py")):
        extra = {m for m in top_level_imports(p) if m not in METRICS_MAY_IMPORT and m not in sys.stdlib_module_names}
        if extra:
            bad[str(p.relative_to(REPO))] = sorted(extra)
    assert not bad, f"metrics/ must not import these: {bad}"


def test_every_metrics_module_imports_with_bench_and_methods_absent(tmp_path):
    shutil.copytree(REPO / "metrics", tmp_path / "metrics", ignore=shutil.ignore_patterns("__pycache__"))
    names = sorted(module_name(p) for p in (REPO / "metrics").rglob("*.py"))
    code = ("import importlib, sys\n"
            f"for n in {names!r}:\n    importlib.import_module(n)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('bench', 'methods')]\n")
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path),
                       "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_methods_import_no_dataset_or_results_reader():
    modules = project_modules()
    bad = {m: sorted(d for d in deps if d.startswith(READERS))
           for m, deps in import_graph().items() if m.startswith("methods")}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, f"methods/ must not import readers: {bad}"
    assert modules  # the walk found the project
