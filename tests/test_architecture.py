"""The layering of docs/architecture.md, checked: library modules never import a driver, there is no import
cycle, and no module outgrows one reader's sitting. Imports are read from the source (every `import`, also
those inside functions), so a lazy import cannot hide an arrow."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "avgzsl"

# Drivers: command-line handlers and orchestration over many runs. They may import the library; the
# library never imports them.
DRIVERS = {"avgzsl.cli", "avgzsl.__main__", "avgzsl.reproduce", "avgzsl.sweep", "avgzsl.executors",
           "avgzsl.predict", "avgzsl.extract", "avgzsl.own_data"}
MAX_LINES = 400
LONG_FILES = {  # module -> why it is one file anyway
    "avgzsl.cli": "every argparse handler lives in this one thin file (a handler is a few lines; the parser "
                  "builder is the long part); splitting it would scatter the command line over files",
    "avgzsl.predict": "at ~400 (407): the Predictor and the readers of its inputs; split when it grows",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
LIBRARY = sorted(m for m in MODULES if m not in DRIVERS and m.split(".")[-1] != "__main__")


def _resolve(name: str, importer: str, is_package: bool, level: int) -> str:
    if level == 0:
        return name
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str) -> set[str]:
    """The package's own modules that `module` imports, anywhere in its source."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", module, is_package, node.level)
            # `from pkg import sub` names a submodule where one exists, else a name in pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES and "." in t:  # `import avgzsl.data.types as x` and similar
                t = t.rsplit(".", 1)[0]
            if t in MODULES and t != module:
                found.add(t)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_graph_sees_imports_inside_functions():
    """The checks below are only as good as the graph: it must see the CLI's lazy imports of the library."""
    assert GRAPH["avgzsl.cli"] - {"avgzsl.errors"}, GRAPH["avgzsl.cli"]
    assert "avgzsl.models" in GRAPH["avgzsl.config"]


@pytest.mark.parametrize("module", LIBRARY)
def test_library_modules_import_no_driver(module):
    assert not GRAPH[module] & DRIVERS, f"{module} imports the driver(s) {sorted(GRAPH[module] & DRIVERS)}"


def test_importing_the_whole_library_loads_no_driver():
    """At run time too (dynamic imports are invisible to the graph): one fresh interpreter imports every
    library module and then finds no driver among the loaded modules."""
    code = ("import importlib, sys\n"
            f"for m in {LIBRARY!r}: importlib.import_module(m)\n"
            f"print(sorted(set(sys.modules) & set({sorted(DRIVERS)!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_outgrows_one_sitting(module):
    lines = len(MODULES[module].read_text().splitlines())
    if module in LONG_FILES:
        return
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(SRC)} has {lines} lines (> {MAX_LINES}): split it by job"


def _presets():
    from avgzsl.config import PRESET_DIR
    return sorted(PRESET_DIR.glob("*.yaml"))


@pytest.mark.parametrize("preset", _presets(), ids=lambda p: p.stem)
def test_presets_state_only_what_differs_from_the_defaults(preset):
    """A preset is the difference from the dataclass defaults (the run folder records the resolved config),
    so a default changed in one place is never silently pinned to its old value by a copy in a preset.
    `model` is always stated: it says which defaults the rest differs from."""
    from dataclasses import asdict, fields

    import yaml

    from avgzsl.config import RunConfig
    from avgzsl.models import model_config
    d = yaml.safe_load(preset.read_text())
    run_defaults = {f.name: getattr(RunConfig(), f.name) for f in fields(RunConfig) if f.name != "model_cfg"}
    repeated = [k for k, v in d.items() if k != "model" and k in run_defaults and run_defaults[k] == v]
    model_defaults = asdict(model_config(d["model"], {}))
    repeated += [f"{d['model']}.{k}" for k, v in (d.get(d["model"]) or {}).items() if model_defaults.get(k) == v]
    assert not repeated, f"{preset.name} repeats the default value of {', '.join(repeated)}"
