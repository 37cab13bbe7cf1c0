"""Validate rendered Kubernetes objects: built-in kinds with kubernetes-validate (strict), custom resources
against their CRD's openAPIV3Schema. Used by the stack tests and available to users' own tests."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The Kubernetes version rendered objects are validated for (kubernetes-validate's bundled schemas); its home
# is the components, whose namespace pins Pod Security to the same minor.
from components.k8s_common import KUBERNETES_VERSION
from testkit.render import unwrap

__all__ = ["KUBERNETES_VERSION", "builtin_problems", "crd_problems", "manifest"]


def manifest(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded resource's inputs as the object the API server would receive (secrets in the clear)."""
    obj: dict[str, Any] = unwrap(dict(inputs))
    return obj


def builtin_problems(inputs: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    try:
        kubernetes_validate.validate(manifest(inputs), version, strict=True)
    except ValidationError as err:
        return [f"{'.'.join(str(p) for p in err.absolute_path)}: {err.message}"]
    except SchemaNotFoundError as err:
        return [f"no schema for {err.api_version} {err.kind} in Kubernetes {err.version}"]
    return []


@cache
def _crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def crd_problems(inputs: Mapping[str, Any], crd_dir: Path) -> list[str]:
    """Every way a custom resource departs from its CRD schema; unknown fields included (as the API
    server's structural pruning would silently drop them, they are errors here)."""
    obj = manifest(inputs)
    schema = _crd_schemas(crd_dir).get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if schema is None:
        return [f"no CRD for {obj.get('apiVersion')} {obj.get('kind')} in {crd_dir}"]
    strict = _no_unknown_fields(schema)
    validator = jsonschema.Draft7Validator(strict)
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]


def _no_unknown_fields(schema: Any) -> Any:
    """Close every object that lists its properties, unless it preserves unknown fields."""
    if isinstance(schema, list):
        return [_no_unknown_fields(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _no_unknown_fields(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out
