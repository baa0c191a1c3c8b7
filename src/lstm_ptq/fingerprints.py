"""Code fingerprints: one small file per stage script, the hash of the code that decides its outputs.

Every stage of dvc.yaml depends on ``fingerprints/<script>.sha256`` instead of listing each module it
imports: the ``fingerprints`` stage (which depends on the whole package) rewrites them when any code
changes, and DVC reruns a stage only when its own fingerprint changed. So the package is hashed once
per ``dvc repro`` rather than once per stage and module, and dvc.lock holds one code entry per stage.

A script's code is the script and every package module it imports at module level, transitively,
with each parent package's ``__init__`` (imports inside functions are lazy validation helpers and do
not change outputs), less :data:`NOT_OUTPUT_AFFECTING`.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "lstm_ptq"
# Imported by every stage but unable to change an output: the package marker, exception classes, argv
# plumbing, and the warm runner, which runs a script as `python` would (tests/test_warm.py compares the bytes
# a stage writes served and fresh), so an edit to how it hands a stage over reruns nothing.
NOT_OUTPUT_AFFECTING = {"src/lstm_ptq/__init__.py", "src/lstm_ptq/errors.py", "src/lstm_ptq/cli.py", "src/lstm_ptq/warm.py"}


def _module_path(root: Path, name: str) -> Path | None:
    """The file of package module ``name`` (``lstm_ptq.a.b``) under ``root``/src, or None outside the package."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = root / "src" / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_level_imports(path: Path, name: str) -> set[str]:
    """Modules imported at module level of ``path`` (module ``name``): the imports that run whenever it is
    imported. Imports inside functions and under ``if TYPE_CHECKING`` are left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule imported by name
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody + [s for handler in node.handlers for s in handler.body])

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def imported_sources(root: Path, script: str) -> set[str]:
    """Package files (relative to ``root``) that stage ``script`` imports, transitively."""
    seen: dict[str, Path] = {}
    pending = list(module_level_imports(root / script, "__main__"))
    while pending:
        parts = pending.pop().split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            module = ".".join(parts[:depth])
            path = _module_path(root, module)
            if path is not None and module not in seen:
                seen[module] = path
                pending.extend(module_level_imports(path, module))
    return {path.relative_to(root).as_posix() for path in seen.values()}


def stage_code(root: Path, script: str) -> list[str]:
    """The files whose content decides the outputs of stage ``script``, sorted."""
    return sorted({script} | (imported_sources(root, script) - NOT_OUTPUT_AFFECTING))


def fingerprint(root: Path, script: str) -> str:
    """SHA-256 over the path and content of every file of :func:`stage_code`, one line per file."""
    digest = hashlib.sha256()
    for relative in stage_code(root, script):
        digest.update(f"{relative}\0{hashlib.sha256((root / relative).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def fingerprint_path(root: Path, script: str) -> Path:
    return root / "fingerprints" / f"{Path(script).stem}.sha256"
