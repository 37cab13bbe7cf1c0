"""PostgresCluster on the Docker target, rendered under Pulumi's mocks: names, volumes, secrets, start order."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker
import pytest

from components.postgres import PostgresCluster, config
from components.secrets import PlatformSecrets
from components.target import DockerTarget
from model.spec import PlatformSpec
from testkit import RecordedResource, Rendering, Secret, render_program, walk_plain
from tests.helpers import spec_for

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NAME = "platform-postgres"


def render(spec: PlatformSpec) -> Rendering:
    def program() -> None:
        secrets = PlatformSecrets("secrets")
        network = docker.Network("network", name="net")
        parent = pulumi.ComponentResource("test:index:Root", "root")
        target = DockerTarget(spec=spec, network=network, parent=parent, name="platform")
        PostgresCluster(NAME, spec.postgres, passwords=secrets.postgres, target=target)

    return render_program(program, {}, project=spec.project, stack=spec.stack)


@pytest.fixture(scope="module")
def medium() -> tuple[PlatformSpec, Rendering]:
    spec = spec_for("dev", tier="medium")
    return spec, render(spec)


def uploads(container: RecordedResource) -> dict[str, dict[str, Any]]:
    return {u["file"]: u for u in container.plain_inputs["uploads"]}


def test_one_container_and_volume_per_instance(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    pg = spec.postgres
    containers = r.named_like(CONTAINER, NAME)
    assert sorted(c.inputs["name"] for c in containers) == sorted(pg.instance_names)
    assert {c.name for c in containers} == {f"{NAME}-primary", *(f"{NAME}-replica-{i}" for i in (1, 2))}
    volumes = r.named_like(VOLUME, NAME)
    assert {v.name for v in volumes} == {f"{NAME}-primary-data", f"{NAME}-replica-1-data", f"{NAME}-replica-2-data"}
    assert all(v.retain_on_delete for v in volumes)
    component = r.get("banyan:index:PostgresCluster", NAME)
    assert all(res.parent == component.urn for res in (*containers, *volumes))


def test_volumes_mount_where_the_image_keeps_data(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    layout = config.data_layout(spec.postgres.version)
    for c in r.named_like(CONTAINER, NAME):
        mounts = c.plain_inputs["volumes"]
        assert [m["containerPath"] for m in mounts] == [layout.mount]
        assert mounts[0]["volumeName"].endswith(f"{c.inputs['name']}-data")
        assert c.inputs["removeVolumes"] is False


def test_replicas_start_after_the_primary(medium: tuple[PlatformSpec, Rendering]) -> None:
    _, r = medium
    primary = r.get(CONTAINER, f"{NAME}-primary")
    for i in (1, 2):
        replica = r.get(CONTAINER, f"{NAME}-replica-{i}")
        assert primary.urn in replica.depends_on
        assert replica.inputs["wait"] is True
        assert replica.inputs["entrypoints"] == [config.REPLICA_ENTRYPOINT_PATH]
        assert replica.inputs["command"] == config.server_command()
    assert primary.inputs["wait"] is True
    assert "entrypoints" not in primary.inputs


def test_passwords_travel_only_as_secrets(medium: tuple[PlatformSpec, Rendering]) -> None:
    _, r = medium
    for c in r.named_like(CONTAINER, NAME):
        assert isinstance(c.inputs["envs"], Secret)
        for path, value in walk_plain(c.inputs):
            assert "mocksecret" not in str(value), path
    primary_env = r.get(CONTAINER, f"{NAME}-primary").plain_inputs["envs"]
    names = {e.split("=", 1)[0] for e in primary_env}
    assert {"POSTGRES_PASSWORD", config.APP_PASSWORD_ENV, config.REPLICATION_PASSWORD_ENV} <= names
    replica_env = r.get(CONTAINER, f"{NAME}-replica-1").plain_inputs["envs"]
    assert {e.split("=", 1)[0] for e in replica_env} == {"PGDATA", "PGPORT", config.REPLICATION_PASSWORD_ENV}


def test_uploaded_files_are_the_rendered_ones(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    pg = spec.postgres
    primary = uploads(r.get(CONTAINER, f"{NAME}-primary"))
    assert primary[config.CONF_PATH]["content"] == config.render_postgresql_conf(pg)
    assert primary[config.HBA_PATH]["content"] == config.render_pg_hba_conf(pg)
    assert primary[config.INIT_PATH]["content"] == config.render_primary_init_script(pg)
    assert primary[config.INIT_PATH]["executable"] is True
    replica = uploads(r.get(CONTAINER, f"{NAME}-replica-2"))
    assert replica[config.CONF_PATH]["content"] == config.render_postgresql_conf(pg, 2)
    assert replica[config.REPLICA_ENTRYPOINT_PATH]["content"] == config.render_replica_entrypoint(pg, 2)
    assert config.INIT_PATH not in replica


def test_health_checks(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    primary = r.get(CONTAINER, f"{NAME}-primary").inputs["healthcheck"]
    assert primary["tests"] == ["CMD-SHELL", config.health_command(spec.postgres)]
    replica = r.get(CONTAINER, f"{NAME}-replica-1").inputs["healthcheck"]
    assert replica["tests"] == ["CMD-SHELL", config.health_command(spec.postgres, 1)]


def test_outputs(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    outputs = r.get("banyan:index:PostgresCluster", NAME).outputs
    assert outputs["primary_host"] == spec.postgres.primary_name
    assert outputs["replica_hosts"] == list(spec.postgres.replica_names)
    assert (outputs["port"], outputs["database"], outputs["user"]) == (5432, "banyan", "banyan")
    assert len(outputs["wait_on"]) == 3


def test_small_tier_has_a_primary_only() -> None:
    spec = spec_for("dev", tier="small")
    r = render(spec)
    assert [c.inputs["name"] for c in r.named_like(CONTAINER, NAME)] == [spec.postgres.primary_name]
    assert "pg_create_physical_replication_slot" not in config.render_primary_init_script(spec.postgres)


def test_two_renders_are_identical() -> None:
    spec = spec_for("dev", tier="large")
    first, second = render(spec), render(spec)
    # Registration order follows the event loop; what each resource gets must not.
    assert {c.name: c.inputs for c in first.resources} == {c.name: c.inputs for c in second.resources}


def test_other_targets_are_refused() -> None:
    spec = spec_for("dev")

    def program() -> None:
        secrets = PlatformSecrets("secrets")
        PostgresCluster(NAME, spec.postgres, passwords=secrets.postgres, target=object())  # type: ignore[arg-type]

    with pytest.raises(Exception, match="DockerTarget or a KubernetesTarget"):
        render_program(program, {}, project=spec.project, stack=spec.stack)
