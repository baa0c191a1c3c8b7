"""The README's project layout lists every package module and stage script, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def layout_entries() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Project layout\n.*?```\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no '## Project layout' code block"
    entries, parent = [], ""
    for line in block.group(1).splitlines():
        name = line.split()[0]
        if line.startswith("  "):
            entries.append(parent + name)
        else:
            entries.append(name)
            parent = name if name.endswith("/") else ""
    return entries


def test_every_listed_path_exists() -> None:
    entries = layout_entries()
    assert "src/lstm_ptq/settings.py" in entries
    for entry in entries:
        for path in (p.strip() for p in entry.split(",")):
            assert (REPO / path).exists(), f"README layout lists {path}, which does not exist"


def test_every_package_module_is_listed() -> None:
    listed = set(layout_entries())
    package = REPO / "src" / "lstm_ptq"
    modules = {f"src/lstm_ptq/{p.name}" for p in package.glob("*.py") if p.name != "__init__.py"}
    subpackages = {f"src/lstm_ptq/{p.name}/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert sorted((modules | subpackages) - listed) == []
