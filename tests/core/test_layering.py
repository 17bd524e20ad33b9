from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_masksel_core_imports_no_django_celery_or_redis() -> None:
    code = (
        "import sys, masksel_core, masksel_core.cli, masksel_core.export\n"
        "banned = {'django', 'celery', 'redis', 'channels', 'jobs', 'webapp'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned)\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


CORE = ROOT / "masksel_core"
# Which of the core's parts each part may import: masks know nothing of training, data nothing of masks.
ALLOWED = {
    "masks": {"masks"},
    "data": {"data"},
    "transfer": {"transfer", "masks"},
    "training": {"training", "masks", "data", "transfer", "config", "models"},
}


def _core_imports(path: Path) -> set[str]:
    """The top-level parts of masksel_core that a module imports (relative or absolute)."""
    import ast

    package = path.relative_to(CORE).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [a.name for a in node.names][:1])
            elif node.module and node.module.startswith("masksel_core"):
                parts = node.module.split(".")[1:] or [a.name for a in node.names][:1]
            else:
                continue
            found.add(parts[0] if parts else "")
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("masksel_core.")}
    return found


def test_core_parts_import_only_the_parts_below_them() -> None:
    problems = []
    for part, allowed in ALLOWED.items():
        for path in sorted((CORE / part).glob("*.py")):
            extra = _core_imports(path) - allowed
            if extra:
                problems.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(extra))}")
    assert problems == []


def test_core_imports_no_service_module_statically() -> None:
    import ast

    banned = {"django", "celery", "redis", "channels", "jobs", "webapp"}
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not {n.split(".")[0] for n in names} & banned, f"{path} imports {names}"


def test_the_service_imports_the_core_through_its_public_surface() -> None:
    """`jobs` and `webapp` use what `masksel_core/__init__.py` exports, as any user of the library does."""
    import ast

    problems = []
    for path in [*ROOT.joinpath("jobs").glob("*.py"), *ROOT.joinpath("webapp").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            problems += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("masksel_core.")]
    assert problems == []


def test_views_the_api_and_the_task_adapter_leave_the_rows_to_services_and_selectors() -> None:
    """HackSoft's rooms: pages, the REST API, the websocket consumers and the training adapter read through
    selectors and write through services; none of them touches a model's manager (`X.objects`)."""
    import ast

    problems = []
    for name in ("views", "study_views", "api", "consumers", "training", "tasks"):
        path = ROOT / "jobs" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "objects":
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert problems == []


def _module_level_imports(path: Path) -> set[str]:
    """The masksel_core modules that `path` imports when it is loaded (imports inside functions are lazy: left out)."""
    import ast

    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = name.split(".")[:-1]  # for an `__init__`, the package itself
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t.removesuffix(".__init__") for t in targets if t.startswith("masksel_core")}
    return found


def test_the_core_has_no_import_cycle() -> None:
    """A module of the core never needs, while it loads, a module that needs it (the package's `__init__`, which
    only gathers the public surface, aside)."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in CORE.rglob("*.py")}
    graph = {name: {m for m in _module_level_imports(path) if m in modules and m != "masksel_core"}
             for name, path in modules.items()}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append(" -> ".join(trail[trail.index(name):] + [name]))
            return
        for other in sorted(graph[name]):
            visit(other, [*trail, name])

    for name in sorted(graph):
        visit(name, [])
    assert graph["masksel_core.training.train"] & {"masksel_core.training.loop"}  # the graph is read at all
    assert cycles == []
