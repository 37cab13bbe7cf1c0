"""PostgresCluster on the Docker target, rendered under Pulumi's mocks: names, volumes, secrets, start order."""

from __future__ import annotations

import pytest

from components.postgres import PostgresCluster, config
from model.spec import PlatformSpec
from testkit import Rendering, Secret, walk_plain
from testkit.component import render_component
from tests.helpers import env_of, spec_for, uploads, waited_on_output

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NAME = "platform-postgres"


def render(spec: PlatformSpec) -> Rendering:
    rendering, _ = render_component(spec, lambda s: PostgresCluster(
        NAME, spec.postgres, passwords=s.secrets.postgres, target=s.target, opts=s.child))
    return rendering


@pytest.fixture(scope="module")
def medium() -> tuple[PlatformSpec, Rendering]:
    spec = spec_for("dev", tier="medium")
    return spec, render(spec)


def test_one_container_and_volume_per_instance(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    pg = spec.postgres
    containers = r.named_like(CONTAINER, NAME)
    assert sorted(c.inputs["hostname"] for c in containers) == sorted(pg.instance_names)
    assert all(c.inputs["name"] == f"banyan-{spec.stack}-{c.inputs['hostname']}" for c in containers)
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
        assert replica.inputs["entrypoints"] == [config.ENTRYPOINT_PATH]
        assert replica.inputs["command"] == config.server_command()
    assert primary.inputs["wait"] is True
    # Our entrypoint, not the image's: every start reconciles credentials, whatever image runs it.
    assert primary.inputs["entrypoints"] == [config.ENTRYPOINT_PATH]


def test_passwords_travel_only_as_secrets(medium: tuple[PlatformSpec, Rendering]) -> None:
    _, r = medium
    for c in r.named_like(CONTAINER, NAME):
        assert any(isinstance(item, Secret) for item in c.inputs["envs"])
        for path, value in walk_plain(c.inputs):
            assert "mocksecret" not in str(value), path
    names = set(env_of(r.get(CONTAINER, f"{NAME}-primary"), secret=True))
    # No superuser password: the bootstrap superuser is reached over the trusted socket only.
    assert names == {"PGDATA", "PGPORT", config.APP_PASSWORD_ENV, config.REPLICATION_PASSWORD_ENV}
    replica_env = env_of(r.get(CONTAINER, f"{NAME}-replica-1"), secret=True)
    # The application's password serves the health check, which logs in as the application would.
    assert set(replica_env) == {"PGDATA", "PGPORT", config.REPLICATION_PASSWORD_ENV, config.APP_PASSWORD_ENV}


def test_uploaded_files_are_the_rendered_ones(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    pg = spec.postgres
    primary = uploads(r.get(CONTAINER, f"{NAME}-primary"))
    assert primary[config.CONF_PATH].content == config.render_postgresql_conf(pg)
    assert primary[config.HBA_PATH].content == config.render_pg_hba_conf(pg)
    assert primary[config.ENTRYPOINT_PATH].content == config.render_entrypoint(pg)
    assert primary[config.ENTRYPOINT_PATH].executable is True
    replica = uploads(r.get(CONTAINER, f"{NAME}-replica-2"))
    assert replica[config.CONF_PATH].content == config.render_postgresql_conf(pg, 2)
    assert replica[config.ENTRYPOINT_PATH].content == config.render_entrypoint(pg, 2)
    assert set(primary) == set(replica) == {config.CONF_PATH, config.HBA_PATH, config.ENTRYPOINT_PATH}


def test_health_checks(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    primary = r.get(CONTAINER, f"{NAME}-primary").inputs["healthcheck"]
    assert primary["tests"] == ["CMD-SHELL", config.health_command(spec.postgres)]
    replica = r.get(CONTAINER, f"{NAME}-replica-1").inputs["healthcheck"]
    assert replica["tests"] == ["CMD-SHELL", config.health_command(spec.postgres, 1)]


def test_outputs(medium: tuple[PlatformSpec, Rendering]) -> None:
    spec, r = medium
    component = r.get("banyan:index:PostgresCluster", NAME)
    outputs = component.outputs
    assert outputs["primary_host"] == spec.postgres.primary_name
    assert outputs["replica_hosts"] == list(spec.postgres.replica_names)
    assert (outputs["port"], outputs["database"], outputs["user"]) == (5432, "banyan", "banyan")
    assert len(waited_on_output(component)) == 3


def test_small_tier_has_a_primary_only() -> None:
    spec = spec_for("dev", tier="small")
    r = render(spec)
    assert [c.inputs["hostname"] for c in r.named_like(CONTAINER, NAME)] == [spec.postgres.primary_name]
    assert "pg_create_physical_replication_slot" not in config.render_reconcile_sql(spec.postgres)


def test_two_renders_are_identical() -> None:
    spec = spec_for("dev", tier="large")
    first, second = render(spec), render(spec)
    # Registration order follows the event loop; what each resource gets must not.
    assert {c.name: c.inputs for c in first.resources} == {c.name: c.inputs for c in second.resources}


def test_other_targets_are_refused() -> None:
    spec = spec_for("dev")

    with pytest.raises(Exception, match="DockerTarget or a KubernetesTarget"):
        render_component(spec, lambda s: PostgresCluster(
            NAME, spec.postgres, passwords=s.secrets.postgres, target=object(), opts=s.child))  # type: ignore[arg-type]
