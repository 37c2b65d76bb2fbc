"""Every third-party module that platform/ and jobs/ import is declared in pyproject.toml, and every
declared dependency is imported somewhere (or listed below with the reason it is needed unimported)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("platform", "jobs", "benchmarks")
USED_WITHOUT_IMPORT = {
    "python-multipart": "FastAPI parses the Serve form uploads with it",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"]}


def imported_modules() -> dict[str, str]:
    """Top-level module -> one file importing it (absolute imports anywhere in the file)."""
    found: dict[str, str] = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def third_party(modules: dict[str, str]) -> dict[str, tuple[set[str], str]]:
    """Module -> (the distributions providing it, a file importing it), stdlib and framecall left out."""
    dists = importlib.metadata.packages_distributions()
    return {module: ({d.lower().replace("_", "-") for d in dists.get(module, [module])}, where)
            for module, where in modules.items()
            if module not in sys.stdlib_module_names and module not in ("framecall", "__future__")}


def test_every_imported_package_is_declared():
    # ray[serve] brings fastapi/starlette/pydantic/uvicorn: Serve's own API, declared through the extra
    known = declared() | {"fastapi", "starlette", "pydantic", "uvicorn"}
    missing = {m: w for m, (dists, w) in third_party(imported_modules()).items() if not dists & known}
    assert not missing, f"imported but not declared in pyproject.toml (module: first file): {missing}"


def test_every_declared_package_is_used():
    imported = set().union(*(dists for dists, _ in third_party(imported_modules()).values()))
    unused = declared() - imported - set(USED_WITHOUT_IMPORT)
    assert not unused, f"declared in pyproject.toml but never imported in {SCANNED}: {sorted(unused)}"
