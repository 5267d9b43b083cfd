"""The import rules between kubepulse's parts, checked on the source (ast), so a forbidden edge fails a unit test.

The picture (README, Architecture): models imports nothing of ours; collectors
import models and the topic names (streams.topics); streams imports models;
kibana imports models and the index contract (streams.index); kubepulse, the
CLI, is the only place that wires the parts together. And a ``_private``
module (any module or package whose name starts with ``_``) is imported only
from inside the package that owns it: another package goes through the
owner's public module and its ``__all__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("models", "collectors", "streams", "kibana", "kubepulse")

ALLOWED: dict[str, tuple[str, ...]] = {
    "models": (),
    "collectors": ("models", "streams.topics"),
    "streams": ("models",),
    "kibana": ("models", "streams.index"),
    "kubepulse": PARTS,
}
"""For each part, the parts (or public modules of a part) it may import besides itself."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Every (line, module of ours) the file imports, relative imports resolved, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` only mod.
            names = [source] + [f"{source}.{a.name}" for a in node.names if _is_module(f"{source}.{a.name}")]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PARTS:
                yield node.lineno, name


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _sources(parts: tuple[str, ...] = PARTS) -> Iterator[tuple[Path, str]]:
    for part in parts:
        for path in sorted((ROOT / part).rglob("*.py")):
            yield path, _module_name(path)


def forbidden_imports(path: Path, module: str) -> list[str]:
    """What ``module`` imports that the picture does not allow."""
    own = module.split(".")[0]
    out = []
    for line, target in _imports(path, module):
        part = target.split(".")[0]
        if part == own:
            continue
        if not any(target == allowed or target.startswith(allowed + ".") for allowed in ALLOWED[own]):
            out.append(f"{_where(path)}:{line} {module} imports {target} ({own} may import: {', '.join(ALLOWED[own]) or 'nothing of ours'})")
    return out


def private_imports(path: Path, module: str) -> list[str]:
    """Imports of another package's ``_private`` module (the owner is the package holding the first ``_`` name)."""
    out = []
    for line, target in _imports(path, module):
        parts = target.split(".")
        for i, name in enumerate(parts):
            if name.startswith("_") and not name.startswith("__"):
                owner = ".".join(parts[:i])
                if module != owner and not module.startswith(owner + "."):
                    out.append(f"{_where(path)}:{line} {module} imports {target}, private to {owner}")
                break
    return out


def test_every_part_imports_only_what_the_architecture_picture_allows() -> None:
    sources = list(_sources())
    assert len(sources) > 100  # the walk found the packages (a wrong ROOT would pass vacuously)
    bad = [v for path, module in sources for v in forbidden_imports(path, module)]
    assert bad == [], "forbidden imports between parts:\n" + "\n".join(bad)


def test_no_module_imports_another_packages_private_module() -> None:
    bad = [v for path, module in _sources() for v in private_imports(path, module)]
    assert bad == [], "imports of another package's _private module:\n" + "\n".join(bad)


def test_the_checks_catch_lazy_relative_and_from_package_imports(tmp_path: Path) -> None:
    # The rules themselves, on a module written the ways the code writes imports.
    fake = tmp_path / "probe.py"
    fake.write_text(
        "def f():\n    from streams import topics\n"  # lazy, from-package: imports the module streams.topics
        "from collectors import _cluster\n"
        "from . import _fingerprint\n"  # relative, inside models: fine
    )
    forbidden = forbidden_imports(fake, "models.probe")
    assert sorted(v.split(" imports ")[1].split(" ")[0] for v in forbidden) == ["collectors", "collectors._cluster", "streams", "streams.topics"]
    private = private_imports(fake, "models.probe")
    assert [v.split(" imports ")[1].split(",")[0] for v in private] == ["collectors._cluster"]


MAX_FUNCTION_LINES = 80
"""A function a reader can hold at once; longer ones are split by what they do (README, Architecture)."""


def long_functions(path: Path, *, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function or method of ``path`` longer than ``limit`` lines (decorators not counted, nested ones included)."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (child.end_lineno or child.lineno) - child.lineno + 1
                if lines > limit:
                    out.append(f"{_where(path)}:{child.lineno} {prefix}{child.name} has {lines} lines")
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return out


def test_no_function_in_streams_collectors_or_the_cli_is_longer_than_80_lines() -> None:
    bad = [v for path, _ in _sources(("streams", "collectors", "kubepulse")) for v in long_functions(path)]
    assert bad == [], f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(bad)


def test_the_length_check_counts_methods_and_nested_functions(tmp_path: Path) -> None:
    fake = tmp_path / "probe.py"
    body = "".join(f"        x{i} = {i}\n" for i in range(80))
    fake.write_text(f"class A:\n    def m(self):\n{body}        def inner():\n            pass\n\n\ndef short():\n    pass\n")
    assert [v.split(" ", 1)[1] for v in long_functions(fake)] == ["A.m has 83 lines"]
    assert long_functions(fake, limit=83) == []
