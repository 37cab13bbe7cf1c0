"""Issue 14: the pins table is what the defaults and components use; digests can be required (resolver and policy
pack); the Docker preflight refuses a PostgreSQL major change and a RabbitMQ series jump the server cannot make."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from model import config as c
from model import pins
from model.errors import ConfigError
from model.images import REQUIRE_DIGESTS_PROP, parse_image
from model.preflight import POSTGRES_MAJOR_LABEL, EngineContainer, EngineSnapshot, check
from policy import rules
from testkit import PROJECT_DIR, render_stack
from tests.helpers import spec_for

DIGEST = "sha256:" + "a" * 64
DIGESTED = {f"{part}.image": ref for part, ref in (
    ("postgres", f"postgres:16.15-alpine@{DIGEST}"), ("redis", f"redis:7.4.11-alpine@{DIGEST}"),
    ("gateway", f"python:3.12.14-alpine@{DIGEST}"))}


def table_rows() -> list[list[str]]:
    lines = [ln for ln in pins.table().splitlines() if ln.startswith("| ") and not ln.startswith("| image |")]
    return [[cell.strip() for cell in ln.strip("|").split(" | ")] for ln in lines]


def test_the_defaults_are_the_pins() -> None:
    assert c.PostgresConfig().image == pins.POSTGRES.ref and c.PostgresConfig().version == pins.POSTGRES_MAJOR
    assert c.RabbitMQConfig().image == pins.RABBITMQ.ref and c.RabbitMQConfig().version == pins.RABBITMQ_SERIES
    assert c.RedisConfig().image == pins.REDIS.ref and c.RedisConfig().version == pins.REDIS_SERIES
    assert c.NginxConfig().image == pins.NGINX.ref


@pytest.mark.parametrize("pin", [pins.POSTGRES, pins.RABBITMQ, pins.REDIS, pins.NGINX, pins.PLACEHOLDER,
                                 *pins.CNPG_OPERANDS.values()], ids=lambda p: p.tagged)
def test_every_pin_is_a_version_tag_and_its_series_matches(pin: pins.Pin) -> None:
    ref = parse_image(pin.ref)
    assert ref.tag == pin.tag and ref.digest == pin.digest and ref.pinned
    numbers = ref.version() or ()
    assert len(numbers) >= 2
    if pin is pins.POSTGRES:
        assert numbers[0] == pins.POSTGRES_MAJOR
    if pin is pins.RABBITMQ:
        assert ".".join(map(str, numbers[:2])) == pins.RABBITMQ_SERIES
    if pin is pins.REDIS:
        assert ".".join(map(str, numbers[:2])) == pins.REDIS_SERIES


def test_the_table_says_what_the_constants_say() -> None:
    """Every image pin is a row with its exact tag, its digest or "none known", the date chosen and a source."""
    rows = {row[1].strip("`").split(" ")[0]: row for row in table_rows()}
    for pin in (pins.POSTGRES, pins.RABBITMQ, pins.REDIS, pins.NGINX, pins.PLACEHOLDER,
                pins.CNPG_OPERANDS[(pins.POSTGRES_MAJOR, parse_image(pins.POSTGRES.ref).version()[1])]):  # type: ignore[index]
        row = rows[pin.tagged]
        assert row[2] == (f"`{pin.digest}`" if pin.digest else "none known"), pin
        assert row[3] == pins.CHOSEN and row[4] and row[5]
    chart_rows = " ".join(" ".join(r) for r in table_rows())
    for version in (pins.CNPG_CHART_VERSION, pins.CNPG_OPERATOR_VERSION, pins.RABBITMQ_CHART_VERSION,
                    pins.RABBITMQ_OPERATOR_VERSION):
        assert version in chart_rows


def test_the_dev_placeholder_is_the_pinned_one() -> None:
    stack = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())["config"]
    images = {stack["banyan:gateway"]["image"], *(s["image"] for s in stack["banyan:services"])}
    assert images == {pins.PLACEHOLDER.ref}


# ---- banyan:require_digests --------------------------------------------------------------------------------

def test_required_digests_refuse_every_image_without_one_at_preview() -> None:
    with pytest.raises(ConfigError) as caught:
        spec_for("dev", require_digests=True)
    keys = {p.key for p in caught.value.problems}
    # RabbitMQ's and Nginx's pins carry digests; the others and the placeholders do not.
    assert keys == {"banyan:postgres.image", "banyan:redis.image", "banyan:gateway.image",
                    "banyan:services[0].image", "banyan:services[1].image"}
    assert all("@sha256:" in p.allowed for p in caught.value.problems)


def services_digested() -> dict[str, Any]:
    return {f"services[{i}].image": f"python:3.12.14-alpine@{DIGEST}" for i in range(2)}


def test_with_every_digest_the_stack_resolves_and_marks_its_root_for_the_pack() -> None:
    rendering = render_stack("dev", set={"require_digests": True, **DIGESTED, **services_digested()})
    (root,) = rendering.of_type("banyan:index:BanyanPlatform")
    assert root.inputs == {REQUIRE_DIGESTS_PROP: True}
    resources = [rules.Resource(type=r.type, props=r.inputs, urn=r.urn, name=r.name) for r in rendering.resources]
    assert rules.check_image_digests(resources).ok
    unmarked = render_stack("dev")
    (root,) = unmarked.of_type("banyan:index:BanyanPlatform")
    assert REQUIRE_DIGESTS_PROP not in (root.inputs or {})


def test_the_policy_fails_an_image_without_digest_where_the_stack_or_the_pack_asks() -> None:
    urn = "urn:pulumi:prod::banyan::docker:index/container:Container::c"
    tagged = rules.Resource(type=rules.DOCKER_CONTAINER, props={"image": "redis:7.4.11-alpine"}, urn=urn, name="c")
    digested = rules.Resource(type=rules.DOCKER_CONTAINER, props={"image": f"redis:7.4.11-alpine@{DIGEST}"},
                              urn=urn, name="d")
    root = rules.Resource(type="banyan:index:BanyanPlatform", props={REQUIRE_DIGESTS_PROP: True},
                          urn="urn:pulumi:prod::banyan::banyan:index:BanyanPlatform::banyan", name="banyan")
    assert rules.check_image_digests([tagged]).not_applicable
    report = rules.check_image_digests([root, tagged, digested])
    assert [f.message for f in report.violations] == [
        "c: image: image 'redis:7.4.11-alpine' has no digest; digests are required in this stack: pin it as "
        "repo:tag@sha256:<digest>"]
    assert len(rules.check_image_digests([tagged], stacks=["prod"]).violations) == 1
    assert rules.check_image_digests([tagged], stacks=["dev"]).not_applicable


def test_the_policy_reads_the_kubernetes_images_too() -> None:
    """The prod stack as rendered: the CloudNativePG operand carries its digest, RabbitMQ's too; the Redis and
    placeholder images do not."""
    rendering = render_stack("prod")
    resources = [rules.Resource(type=r.type, props=r.inputs, urn=r.urn, name=r.name) for r in rendering.resources]
    found = " ".join(f.message for f in rules.check_image_digests(resources, stacks=["prod"]).violations)
    assert "spec.imageName" not in found and "rabbitmq:4.3.5" not in found
    assert "redis:7.4.11-alpine" in found


# ---- the preflight: server versions ------------------------------------------------------------------------

def node(instance: str, part: str, image: str, **labels: str) -> EngineContainer:
    base = {"banyan.project": "banyan", "banyan.stack": "dev", "banyan.part": part, "banyan.instance": instance}
    return EngineContainer(f"banyan-dev-{instance}", "running", {**base, **labels}, image=image)


def problems(spec: Any, *containers: EngineContainer) -> list[str]:
    return [p.render() for p in check(spec, EngineSnapshot(tuple(containers))).problems]


def test_a_postgres_major_change_is_refused_with_the_procedure() -> None:
    spec = spec_for("dev")
    old = node("postgres-primary", "postgres", pins.PREVIOUS["postgres"])
    assert problems(spec, old) == []  # 16.9 -> 16.15: a minor update
    (found,) = problems(spec_for("dev", postgres__version=17, postgres__image="postgres:17.11-alpine"), old)
    assert found.startswith("banyan:postgres.version: got 17; the running primary postgres-primary "
                            "(postgres:16.9-alpine) holds a PostgreSQL 16 data directory")
    assert "pg_dumpall" in found and "banyan:postgres.version 16" in found


def test_the_label_decides_over_the_image_tag() -> None:
    labelled = node("postgres-primary", "postgres", "registry.example.com/pg:prod", **{POSTGRES_MAJOR_LABEL: "15"})
    assert re.search(r"PostgreSQL 15 data directory", " ".join(problems(spec_for("dev"), labelled)))
    assert problems(spec_for("dev"), node("postgres-primary", "postgres", "registry.example.com/pg:prod")) == []


def rabbit_nodes(image: str) -> list[EngineContainer]:
    return [node(f"rabbitmq-{i}", "rabbitmq", image) for i in (1, 2, 3)]


def test_rabbitmq_313_cannot_jump_to_43_but_may_go_to_42() -> None:
    old = rabbit_nodes(pins.PREVIOUS["rabbitmq"])
    (found,) = problems(spec_for("dev", tier="medium"), *old)
    assert "RabbitMQ 4.3 is upgraded in place only from 4.2 or newer" in found
    assert "`rabbitmqctl enable_feature_flag all`" in found
    via = spec_for("dev", tier="medium", rabbitmq__image="rabbitmq:4.2.9-management-alpine",
                   rabbitmq__version='"4.2"')
    assert problems(via, *old) == []
    assert problems(spec_for("dev", tier="medium"), *rabbit_nodes("rabbitmq:4.2.9-management-alpine")) == []


def test_rabbitmq_is_never_downgraded() -> None:
    (found,) = problems(spec_for("dev", tier="medium", rabbitmq__image="rabbitmq:4.2.9-management-alpine",
                                 rabbitmq__version='"4.2"'), *rabbit_nodes(pins.RABBITMQ.ref))
    assert "cannot be downgraded" in found
