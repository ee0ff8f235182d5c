"""Reading the JSON (and YAML) files of an export, and checking their shape before any field is used.

Export files come from tools, scripts and strangers: a wrong type (a string id, a dict where a list
belongs), a missing field or nesting deeper than Python can parse must end in one line that names the
file and the field, never in a TypeError or RecursionError from deep inside a reader. Each reader
states the shape it relies on as a JSON Schema; `check_shape` validates against it with fastjsonschema
(compiled once per process, so checking a file costs about as much as parsing it).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from refine_cli.errors import RefineError


def read_json(path: Path, what: str = "JSON file") -> Any:
    """The parsed document; RefineError naming `path` when it is unreadable, not UTF-8, malformed or too deep."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise RefineError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise RefineError(f"{what} {path} is not UTF-8 text", hint="save it as UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RefineError(
            f"{what} {path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
            hint="the file is damaged or cut short; export it again",
        ) from None
    except RecursionError:
        raise RefineError(f"{what} {path} nests lists or objects too deeply to be an export") from None


def read_yaml(path: Path, what: str = "YAML file") -> Any:
    """The parsed YAML document (safe loader); RefineError naming `path` when it is unreadable or malformed."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise RefineError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise RefineError(f"{what} {path} is not UTF-8 text") from None
    except (yaml.YAMLError, RecursionError) as error:
        raise RefineError(f"{what} {path} is not valid YAML: {' '.join(str(error).split())[:300]}") from None


@cache
def _validator(schema_json: str):  # noqa: ANN202 - a compiled fastjsonschema function
    import fastjsonschema

    return fastjsonschema.compile(json.loads(schema_json))


def check_shape(doc: Any, schema: dict[str, Any], where: str, hint: str | None = None) -> None:
    """RefineError '<where>: <field> must be <type>' when `doc` does not have the shape `schema` describes."""
    import fastjsonschema

    validate = _validator(json.dumps(schema, sort_keys=True))
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException as error:
        raise RefineError(f"{where}: {describe_fault(error)}", hint=hint) from None
    except RecursionError:
        raise RefineError(f"{where} nests lists or objects too deeply to be an export") from None


def describe_fault(error: Any) -> str:
    """fastjsonschema's 'data.shapes[0].label must be string' as 'shapes[0].label must be string'."""
    name = str(getattr(error, "name", "") or "data")
    message = str(getattr(error, "message", "") or "is malformed")
    rest = message[len(name) :].strip() if message.startswith(name) else message
    field = name[len("data") :].lstrip(".") if name.startswith("data") else name
    return f"{field or 'the top level'} {rest}"


def number_pair_list(min_items: int = 0) -> dict[str, Any]:
    """Schema of a list of [x, y] number pairs (labelme and Cityscapes polygons)."""
    pair = {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}}
    return {"type": "array", "minItems": min_items, "items": pair}
