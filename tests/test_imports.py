"""The service's code never imports the helpers that tests and benches share (`shared.testing`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = [p for d in ("api", "workers", "shared") for p in sorted((ROOT / d).rglob("*.py"))]


def imported(path: Path) -> set[str]:
    """Every module `path` imports, `from a import b` counted as both `a` and `a.b`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_service_code_does_not_import_the_test_helpers() -> None:
    offending = {
        str(path.relative_to(ROOT)): sorted(m for m in imported(path) if m.startswith(("shared.testing", "tests")))
        for path in SERVICE
        if "testing" not in path.relative_to(ROOT).parts
    }
    assert SERVICE
    assert not {path: modules for path, modules in offending.items() if modules}


def test_the_front_end_loads_no_recognition_code() -> None:
    """The API process does no OpenCV work: uploads are prepared by workers (`workers.ingest`), so
    neither `workers` nor OpenCV nor faiss is even loaded by the application."""
    probe = "import sys, api.app; print(sorted({m.split('.')[0] for m in sys.modules} & {'workers', 'cv2', 'faiss'}))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
    offending = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "api").rglob("*.py")) if _from_workers(p)]
    assert offending == []


def _from_workers(path: Path) -> bool:
    return any(m == "workers" or m.startswith("workers.") for m in imported(path))
