"""Export one JSON Schema per predicate type: ``python -m redline.statements.schemas OUTDIR``.

Each file is ``<KIND>.schema.json`` (``$id`` = the predicate type URN), pretty-printed
with sorted keys and a trailing newline, plus ``index.json`` listing them. The
schemas describe a predicate's canonical form (every field present, ``null`` when
absent), which is the only form :func:`redline.statements.parse_statement` accepts.
Checks across fields (e.g. ``interval_low <= value``) and the chip catalog are
enforced by the models, not expressible in the schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from redline.statements import PREDICATE_TYPES
from redline.statements.base import Predicate

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(cls: type[Predicate]) -> dict[str, Any]:
    """The JSON Schema of one predicate model's canonical JSON form."""
    schema = cls.model_json_schema(mode="serialization")
    schema["$id"] = cls.PREDICATE_TYPE
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["x-redline-kind"] = cls.KIND
    return schema


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_documents() -> dict[str, str]:
    """File name → file text for every schema and the index, exactly as exported."""
    docs: dict[str, str] = {}
    index = []
    for ptype, cls in sorted(PREDICATE_TYPES.items(), key=lambda kv: kv[1].KIND):
        name = f"{cls.KIND}.schema.json"
        docs[name] = _dump(schema_for(cls))
        index.append({"predicateType": ptype, "kind": cls.KIND, "model": cls.__name__, "schema": name,
                      "description": (cls.__doc__ or "").strip().splitlines()[0]})
    docs["index.json"] = _dump({"predicateTypes": index})
    return docs


def export_schemas(outdir: Path | str) -> list[Path]:
    """Write every schema and ``index.json`` into ``outdir``; return the paths written."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m redline.statements.schemas OUTDIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m redline.statements.schemas OUTDIR", file=sys.stderr)
        return 64
    paths = export_schemas(args[0])
    print(f"wrote {len(paths)} files to {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
