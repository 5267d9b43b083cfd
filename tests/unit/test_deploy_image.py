"""deploy/Dockerfile and .dockerignore, and the wheel the image installs.

No Docker engine here: the wheel is built from a copy of exactly the files the
Docker build context lets in, the way the builder stage builds it, and then run;
the Dockerfile's own instructions are checked as text.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _packages() -> list[str]:
    return [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]


def _dockerignore_allows(rel: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes. Enough for our allow-list file."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        pat = pattern.removeprefix("**/")
        hit = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or (
            pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, pat) for part in parts)
        )
        if hit:
            allowed = negate
    return allowed


def test_the_dockerfile_is_multi_stage_on_a_pinned_slim_python_3_11() -> None:
    ins = _instructions()
    args = dict(rest.split("=", 1) for op, rest in ins if op == "ARG" and "=" in rest)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    froms = [rest for op, rest in ins if op == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    # The runtime stage takes only the built venv from the builder: no compiler, no sources, no wheel cache.
    runtime = ins[[i for i, (op, _) in enumerate(ins) if op == "FROM"][1]:]
    assert [rest for op, rest in runtime if op == "COPY"] == ["--from=builder /opt/kubepulse /opt/kubepulse"]


def test_the_image_runs_kubepulse_as_a_numeric_non_root_user_on_a_read_only_root() -> None:
    ins = _instructions()
    runtime = ins[[i for i, (op, _) in enumerate(ins) if op == "FROM"][1]:]
    (user,) = [rest for op, rest in runtime if op == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit(), user
    env = " ".join(rest for op, rest in runtime if op == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "TMPDIR=/tmp", "PYTHONUNBUFFERED=1"):
        assert setting in env, setting
    assert [rest for op, rest in runtime if op == "WORKDIR"] == ["/tmp"]  # a relative write lands in the tmpfs
    assert [json.loads(rest) for op, rest in runtime if op == "ENTRYPOINT"] == [["kubepulse"]]
    assert any(op == "HEALTHCHECK" for op, _ in runtime)
    # Bytecode compiled at build time: nothing to write into a read-only /opt at run time.
    assert any(op == "RUN" and "compileall" in rest for op, rest in ins)
    # The Kubernetes manifests run as the same user.
    for manifest in ("collector.yaml", "worker.yaml", "setup-job.yaml"):
        text = (ROOT / "deploy" / "kubernetes" / "base" / manifest).read_text()
        assert f"runAsUser: {uid}" in text and f"runAsGroup: {gid}" in text, manifest


def test_dependencies_are_installed_with_the_projects_constraints() -> None:
    runs = [rest for op, rest in _instructions() if op == "RUN" and "pip install" in rest]
    assert runs and all("-c constraints.txt" in r for r in runs)
    assert any(re.search(r"pip wheel --no-deps --wheel-dir /wheels \.", r) for op, r in _instructions() if op == "RUN")


def test_every_copied_path_exists_is_in_the_build_context_and_covers_every_package() -> None:
    copies = [rest.split() for op, rest in _instructions() if op == "COPY" and "--from" not in rest]
    sources = [src.rstrip("/") for parts in copies for src in parts[:-1]]
    for src in sources:
        assert (ROOT / src).exists(), src
        assert _dockerignore_allows(src), f"{src} is copied but .dockerignore leaves it out of the context"
    assert set(_packages()) <= set(sources), "a package of pyproject.toml is not copied into the image"
    # ... and what must stay out does.
    for private in (".venv", ".git", "tests", "bench", "deploy/local", "kubepulse/__pycache__", "models/x.pyc"):
        assert not _dockerignore_allows(private), private


def _context_copy(dest: Path) -> None:
    """The Docker build context: the files .dockerignore lets in, nothing else."""
    # Our .dockerignore re-includes whole top-level entries only, so skipping excluded ones
    # (.venv, .git) at the top is exact, and much faster than walking them.
    tops = [t for t in ROOT.iterdir() if _dockerignore_allows(t.name)]
    for path in (p for t in tops for p in ([t] if t.is_file() else t.rglob("*"))):
        rel = path.relative_to(ROOT).as_posix()
        if not path.is_file() or not _dockerignore_allows(rel):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("context")
    _context_copy(context)
    out = tmp_path_factory.mktemp("wheels")
    # As the builder stage does (pip wheel --no-deps), without build isolation so no download is needed here.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(context)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("kubepulse-*.whl")
    return built


def test_the_wheel_holds_every_package_and_its_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected: set[str] = set()
    for package in _packages():
        for path in (ROOT / package).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or not path.is_file():
                continue
            is_package_dir = (path.parent / "__init__.py").is_file()
            if is_package_dir and path.suffix in (".py", ".yaml", ".yml", ".ndjson", ".json"):
                expected.add(rel)
    assert {"kubepulse/cli.py", "kubepulse/_health.py", "models/settings.py", "streams/topics.py",
            "collectors/rbac.py", "kibana/__init__.py"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "kubepulse = kubepulse.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_wheel_runs_the_cli_without_writing_into_its_install_tree(wheel: Path, tmp_path: Path) -> None:
    # Under readOnlyRootFilesystem nothing may be written next to the code (no __pycache__,
    # no data files): run the wheel's CLI with the image's environment and diff the tree.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=120,
    )
    before = {p.relative_to(target) for p in target.rglob("*")}
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", "import kubepulse, sys; print(kubepulse.__file__); sys.argv = ['kubepulse', '--help']; "
         "from kubepulse.cli import main; main()"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(str(target))  # the wheel's copy, not the checkout's
    assert "Usage" in proc.stdout and "schema" in proc.stdout and "worker" in proc.stdout
    assert {p.relative_to(target) for p in target.rglob("*")} == before


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_the_whole_runtime_dependency_closure() -> None:
    pins = _constraints()
    todo = [(Requirement(r), frozenset()) for r in PYPROJECT["project"]["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, _ = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        assert name in pins, f"{req} is needed at run time but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt pins {name}=={pins[name]}, outside {req}"
        for sub in metadata.requires(req.name) or []:
            child = Requirement(sub)
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(e) for e in envs):
                todo.append((child, frozenset()))
    assert len(seen) > 40  # the closure really was walked, not just the direct list
