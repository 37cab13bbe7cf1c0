"""The config label on every Docker container: what a preview compares with the running nodes to tell which
of them an update would replace for a new configuration."""

from __future__ import annotations

from components import docker_common as dc
from components.rabbitmq import docker as rabbitmq_docker
from components.redis import docker as redis_docker
from model.preflight import CONFIG_LABEL
from testkit import render_stack
from tests.helpers import spec_for

CONTAINER = "docker:index/container:Container"


def test_the_digest_follows_files_and_command_only() -> None:
    base = [dc.Upload("/etc/a.conf", "x = 1\n"), dc.Upload("/run.sh", "#!/bin/sh\n", executable=True)]
    digest = dc.config_digest(base, ["serve"], ["/run.sh"])
    assert digest == dc.config_digest(list(reversed(base)), ["serve"], ["/run.sh"]), "order of uploads is not config"
    changed = [dc.Upload("/etc/a.conf", "x = 2\n"), base[1]]
    assert dc.config_digest(changed, ["serve"], ["/run.sh"]) != digest
    assert dc.config_digest([base[0], dc.Upload("/run.sh", "#!/bin/sh\n")], ["serve"], ["/run.sh"]) != digest
    assert dc.config_digest(base, ["serve", "-v"], ["/run.sh"]) != digest
    assert dc.config_digest(base, ["serve"], None) != digest


def test_every_container_carries_the_digest_its_part_computes() -> None:
    spec = spec_for("dev", tier="medium")
    rendering = render_stack("dev", set={"tier": "medium"})
    labels = {c.plain_inputs["hostname"]: {x["label"]: x["value"] for x in c.plain_inputs["labels"]}
              for c in rendering.of_type(CONTAINER)}
    assert all(CONFIG_LABEL in v for v in labels.values())
    for instance in spec.rabbitmq.instance_names:
        assert labels[instance][CONFIG_LABEL] == rabbitmq_docker.node_digest(spec.rabbitmq)
    for instance in spec.redis.instance_names:
        assert labels[instance][CONFIG_LABEL] == redis_docker.node_digest(spec.redis, instance)
    # A changed setting changes every node's digest: the preview can count the nodes it would replace.
    bigger = spec_for("dev", tier="medium", rabbitmq__resources__limits__memory_mib=4096)
    assert rabbitmq_docker.node_digest(bigger.rabbitmq) != rabbitmq_docker.node_digest(spec.rabbitmq)
