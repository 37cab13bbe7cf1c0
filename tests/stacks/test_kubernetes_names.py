"""The names model/checks.py checks for collisions are the names the components give their Kubernetes objects:
every namespaced object a rendered prod stack registers is in that inventory, for every tier."""

from __future__ import annotations

import re

import pytest

from components.postgres import kubernetes as postgres_k8s
from components.rabbitmq import kubernetes as rabbitmq_k8s
from model import checks
from testkit import render_stack, unwrap
from testkit.component import stack_spec

# ConfigMaps named after their content (`nginx-conf-<10 hex digits>`) are listed as `nginx-conf-*`.
_HASHED = re.compile(r"-[0-9a-f]{10}$")


@pytest.mark.parametrize("tier", ["small", "medium", "large", "large-monitoring"])
def test_every_namespaced_object_is_in_the_inventory(tier: str) -> None:
    # Monitoring with its sidecars (the mtail image names Nginx's monitor and mtail's ConfigMap).
    sets: dict[str, object] = ({"tier": "large", "monitoring.enabled": True,
                                "monitoring.mtail_image": "banyan-local/mtail:bookworm-3.0.0"}
                               if tier == "large-monitoring" else {"tier": tier})
    spec = stack_spec("prod", set=sets)
    inventory = {(o.kind, o.name) for o in checks.kubernetes_objects(spec)}
    rendered = set()
    for res in render_stack("prod", set=sets).resources:
        inputs = unwrap(res.inputs)
        meta = inputs.get("metadata") or {}
        if not res.type.startswith("kubernetes:") or meta.get("namespace") != spec.kubernetes.namespace:
            continue
        name = str(meta["name"])
        if inputs.get("kind") == "ConfigMap" and _HASHED.search(name):
            name = _HASHED.sub("-*", name)
        rendered.add((str(inputs["kind"]), name))
    assert rendered, "no namespaced object rendered"
    assert rendered <= inventory, sorted(rendered - inventory)


def test_the_operators_namespaces_are_the_components() -> None:
    assert set(checks.OPERATOR_NAMESPACES) == {postgres_k8s.OPERATOR_NAMESPACE, rabbitmq_k8s.OPERATOR_NAMESPACE}
