"""The layers `docs/architecture.md` states, enforced: the core imports no adapter or face, nothing imports another
module's private name, and every import of a heavy dependency in the core is absent.

Imports are read from the source (every `import` and `from … import`, at any depth, including those inside
functions), so a lazy import is held to the same rule as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "redline"

#: The core: pure modules (no I/O at import, no heavy dependency), as docs/architecture.md lists them.
CORE = ("redline.crypto", "redline.log.merkle", "redline.log.leaf", "redline.log.checkpoint", "redline.log.receipt",
        "redline.log.tiles", "redline.statements", "redline.policy", "redline.engine", "redline.errors",
        "redline.times", "redline.compute.eu", "redline.compute.chips")
#: What the core may import from outside the standard library.
CORE_THIRD_PARTY = frozenset({"pydantic", "pydantic_core", "yaml", "cryptography", "nacl", "rfc8785", "orjson",
                              "pybase64", "typing_extensions"})
#: Heavy dependencies (behind extras): never imported by the core.
HEAVY = frozenset({"torch", "numpy", "safetensors", "transformers", "fastapi", "uvicorn", "httpx", "starlette",
                   "psycopg", "scipy", "sklearn", "matplotlib", "inspect_ai", "jinja2", "click", "rich", "blake3"})


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def in_layer(name: str, layer: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in layer)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    here = module_name(path).split(".")
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            out.append((node.lineno, mod, [a.name for a in node.names]))
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))
CORE_SOURCES = [p for p in SOURCES if in_layer(module_name(p), CORE)]


def test_the_core_is_where_the_docs_say() -> None:
    assert len(CORE_SOURCES) > 20
    doc = (SRC.parent / "docs" / "architecture.md").read_text("utf-8")
    for m in CORE:
        assert f"`{m}`" in doc, f"docs/architecture.md's layers table does not list the core module {m}"


@pytest.mark.parametrize("path", CORE_SOURCES, ids=lambda p: module_name(p))
def test_the_core_imports_no_adapter_face_or_heavy_dependency(path: Path) -> None:
    bad = []
    for line, mod, _ in imports(path):
        top = mod.split(".")[0]
        if top == "redline":
            if not in_layer(mod, CORE) and mod != "redline":
                bad.append(f"line {line}: imports {mod}, which is not core")
        elif top in HEAVY or (top not in CORE_THIRD_PARTY and not _stdlib(top)):
            bad.append(f"line {line}: imports {mod} (not the standard library or an allowed core dependency)")
    assert not bad, f"{module_name(path)}:\n" + "\n".join(bad)


def _stdlib(top: str) -> bool:
    import sys

    return top in sys.stdlib_module_names or top == "__future__"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_another_modules_private_name(path: Path) -> None:
    me = module_name(path)
    bad = []
    for line, mod, names in imports(path):
        if not mod.startswith("redline"):
            continue
        owner_package = mod.rsplit(".", 1)[0] if "." in mod else mod
        for name in names:
            # a private name may be shared inside its own package (e.g. ``redline.log``'s modules), not beyond it
            if name.startswith("_") and not name.startswith("__") and not me.startswith(owner_package):
                bad.append(f"line {line}: from {mod} import {name}")
    assert not bad, f"{me}:\n" + "\n".join(bad)


#: Import names of distributions whose module is named otherwise.
_MODULE_OF = {"pynacl": "nacl", "pyyaml": "yaml", "scikit-learn": "sklearn", "inspect-ai": "inspect_ai",
              "model-signing": "model_signing", "pytest-xdist": "xdist", "psycopg": "psycopg"}
#: Distributions used without an import statement (a pytest plugin, the type checker and its stubs).
_USED_WITHOUT_IMPORT = {"pytest-xdist", "mypy", "ruff", "types-pyyaml",
                        "accelerate"}  # transformers' Trainer needs it at run time (tests/test_transcript_hf.py)


def test_every_declared_dependency_is_imported_somewhere() -> None:
    """A dependency nothing imports is dead weight on every install (and one more thing to trust)."""
    import re
    import tomllib

    project = tomllib.loads((SRC.parent / "pyproject.toml").read_text("utf-8"))["project"]
    requirements = list(project["dependencies"])
    for reqs in project["optional-dependencies"].values():
        requirements += [r for r in reqs if not r.startswith("redline[")]
    sources = [p.read_text("utf-8") for folder in ("src", "tests", "bench", "scripts")
               for p in (SRC.parent / folder).rglob("*.py")]
    text = "\n".join(sources)
    unused = []
    for req in requirements:
        dist = re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower()
        if dist in _USED_WITHOUT_IMPORT:
            continue
        module = _MODULE_OF.get(dist, dist.replace("-", "_"))
        if not re.search(rf"^\s*(import|from)\s+{re.escape(module)}\b", text, re.M):
            unused.append(f"{req} (module {module})")
    assert not unused, "declared but never imported: " + ", ".join(unused)
