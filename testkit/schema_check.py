"""Check recorded resource inputs against a Pulumi provider's package schema (names, types, required).

Under mocks a dict passed where a typed Args class was expected reaches the provider unchecked; a
misspelt key would only fail at `pulumi preview`. This catches it with no CLI and no plugin.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from testkit.render import Secret, Unknown

_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@cache
def load_schema(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _type_ok(value: Any, json_type: str) -> bool:
    if json_type in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[json_type])


def _check(schema: Mapping[str, Any], spec: Mapping[str, Any], value: Any, path: str) -> Iterator[str]:
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, Unknown) or value is None:
        return
    ref = spec.get("$ref")
    if ref is not None:
        if not ref.startswith("#/types/"):
            return  # pulumi.json#/Asset and the like: nothing to check structurally
        token = ref[len("#/types/"):]
        definition = schema["types"][token]
        if "enum" in definition:
            allowed = [e["value"] for e in definition["enum"]]
            if value not in allowed:
                yield f"{path}: {value!r} is not one of {allowed}"
            return
        yield from _check_object(schema, definition.get("properties", {}), definition.get("required", []), value, path)
        return
    one_of = spec.get("oneOf")
    if one_of:
        if not any(not list(_check(schema, option, value, path)) for option in one_of):
            yield f"{path}: {value!r} matches none of the allowed shapes"
        return
    json_type = spec.get("type")
    if json_type is None:
        return
    if not _type_ok(value, json_type):
        yield f"{path}: expected {json_type}, got {type(value).__name__} {value!r}"
        return
    if json_type == "array":
        for i, item in enumerate(value):
            yield from _check(schema, spec.get("items", {}), item, f"{path}[{i}]")
    elif json_type == "object" and "additionalProperties" in spec:
        for key, item in value.items():
            yield from _check(schema, spec["additionalProperties"], item, f"{path}.{key}")


def _check_object(schema: Mapping[str, Any], properties: Mapping[str, Any], required: list[str],
                  value: Any, path: str) -> Iterator[str]:
    if not isinstance(value, dict):
        yield f"{path}: expected an object, got {type(value).__name__}"
        return
    for key in required:
        if value.get(key) is None:
            yield f"{path}.{key}: required but missing" if path else f"{key}: required but missing"
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in properties:
            yield f"{where}: not a property of this type"
            continue
        yield from _check(schema, properties[key], item, where)


def input_problems(schema: Mapping[str, Any], resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """Every way `inputs` departs from the schema of `resource_type`; empty when they conform."""
    resource = schema["resources"].get(resource_type)
    if resource is None:
        return [f"{resource_type}: no such resource in the provider schema"]
    return list(_check_object(schema, resource.get("inputProperties", {}),
                              resource.get("requiredInputs", []), dict(inputs), ""))
