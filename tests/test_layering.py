"""The package's layers, checked from the source (ast, no imports executed).

Every module under platform/framecall is parsed; every ``framecall.*`` import in it counts,
wherever it sits (module level, inside a function, under ``if TYPE_CHECKING``), relative
imports included. ``from framecall.x import y`` is an edge to ``framecall.x.y`` when that is a
module, else to ``framecall.x``. Rules (issue #14), each over direct and indirect imports:

- no import cycle between modules;
- ``frames/`` (the method) imports nothing from models/, train/ or data/;
- ``models/`` imports nothing from data/ or train/;
- PolyAudio and serving (``polyaudio/``, ``serving.py``, ``serve_app.py``, ``batch_predict.py``,
  ``client.py``) import nothing from train/ or the synthetic corpus generator.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "platform"
PACKAGE = "framecall"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest module ``name`` names (``framecall.a.b.Thing`` -> ``framecall.a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """framecall modules imported by ``module`` -> the first line that imports each."""
    is_package = path.name == "__init__.py"
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names if a.name != "*"] or [stem]
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            resolved = _resolve(target, modules)
            if resolved and resolved != module:
                out.setdefault(resolved, node.lineno)
    return out


@lru_cache(maxsize=1)
def import_graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, comp) for comp in components]


def _one_cycle(graph: dict[str, dict[str, int]], comp: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside it)."""
    start, members = comp[0], set(comp)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in members and w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp  # unreachable for a strongly connected component


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    hops = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(hops + [cycle[-1]])


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """Each forbidden module a source module reaches, directly or through non-source modules, with
    the shortest chain of imports (breadth-first; the search stops at forbidden and source modules)."""
    graph = import_graph()
    out = []
    for src in sorted(m for m in graph if _under(m, sources)):
        parents: dict[str, str] = {src: ""}
        frontier = [src]
        while frontier:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in parents:
                        continue
                    parents[w] = v
                    if _under(w, forbidden):
                        chain = [w]
                        while chain[-1] != src:
                            chain.append(parents[chain[-1]])
                        out.append(_describe(chain[::-1], graph))
                    elif not _under(w, sources):  # another source module's own search reports what it reaches
                        nxt.append(w)
            frontier = nxt
    return out


def test_the_parser_sees_the_package(tmp_path):
    """Guards the checks below against passing vacuously (a moved root, a broken resolver)."""
    graph = import_graph()
    assert len(graph) > 30 and "framecall.frames.decoding" in graph
    src = tmp_path / "mod.py"
    src.write_text("import framecall.a.b\nfrom framecall import c\nfrom framecall.a import Thing\n"
                   "from . import d\nfrom .e import f\nimport numpy\n"
                   "def g():\n    from framecall.c import h\n")
    modules = dict.fromkeys(["framecall", "framecall.a", "framecall.a.b", "framecall.c", "framecall.p",
                             "framecall.p.d", "framecall.p.e", "framecall.p.mod"], src)
    assert _imports("framecall.p.mod", src, modules) == {"framecall.a.b": 1, "framecall.c": 2, "framecall.a": 3,
                                                          "framecall.p.d": 4, "framecall.p.e": 5}
    assert _cycles({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    graph = import_graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(c, graph) for c in cycles)


@pytest.mark.parametrize("sources,forbidden", [
    (("framecall.frames",), ("framecall.models", "framecall.train", "framecall.data")),
    (("framecall.models",), ("framecall.data", "framecall.train")),
    (("framecall.polyaudio", "framecall.serving", "framecall.serve_app", "framecall.batch_predict",
      "framecall.client"), ("framecall.train", "framecall.data.synthetic")),
], ids=["frames", "models", "serving-and-polyaudio"])
def test_layers(sources, forbidden):
    bad = _violations(sources, forbidden)
    assert not bad, "imports across layers:\n" + "\n".join(bad)
