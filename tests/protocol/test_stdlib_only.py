"""gateway.protocol must stay sans-I/O: only the standard library, no sockets, no clocks."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import gateway.protocol

PACKAGE_DIR = Path(gateway.protocol.__file__).parent
FORBIDDEN_STDLIB = {"asyncio", "socket", "ssl", "select", "selectors", "threading", "time"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Absolute module names imported by a file, with the relative level (0 = absolute)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_protocol_package_imports_only_the_standard_library_and_itself() -> None:
    files = sorted(PACKAGE_DIR.glob("*.py"))
    assert files
    for path in files:
        for module, level in _imports(path):
            if level:
                continue  # relative: inside gateway.protocol
            top = module.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, (
                f"{path.name} imports {module}"
            )


def test_protocol_package_does_no_io_or_timekeeping_of_its_own() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for module, level in _imports(path):
            if not level:
                assert module.split(".")[0] not in FORBIDDEN_STDLIB, f"{path.name} imports {module}"


def test_relative_imports_stay_inside_the_package() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for _module, level in _imports(path):
            assert level <= 1, f"{path.name} reaches outside gateway.protocol"
