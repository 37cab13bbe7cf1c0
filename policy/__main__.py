"""banyan's policy pack: `pulumi preview --policy-pack policy/` (or `pulumi up --policy-pack policy/`).

The Pulumi CLI starts this file the way it starts every Python policy pack: `python -m pulumi.policy` runs
the folder with `runpy` as `__main__`, with the folder on `sys.path` (hence `import rules`). Each policy
here only converts what the engine hands it into plain data and calls a pure function in `rules.py`.

Every policy is mandatory: a violation fails the preview or update. Where a value is unknown during a
preview (it depends on a resource not created yet), the policy reports that it could not run, as the
SDK does for unknown values, and the update runs it again with known values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

if __package__:  # imported as policy.__main__ (tests, type checks) rather than run by the CLI
    from . import rules
else:
    import sys
    from pathlib import Path

    # The rules share the project's `model` (what holds data, image references): the project root, above
    # this folder, is not on sys.path when the CLI runs the pack.
    _ROOT = str(Path(__file__).resolve().parent.parent)
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)
    import rules  # type: ignore[import-not-found, no-redef]

PACK_NAME = "banyan"


def plain(value: Any) -> Any:
    """The SDK's property proxies (which raise on unknown values) as plain dicts and lists, with each
    unknown value left as Pulumi's sentinel for the rules to recognise."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[str(key)] = plain(value[key])
            except UnknownValueError as e:
                out[str(key)] = e.unknown_type_sentinel
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items: list[Any] = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError as e:
                items.append(e.unknown_type_sentinel)
        return items
    return value


def _deliver(report: rules.Report, report_violation: ReportViolation, not_applicable: Any) -> None:
    for finding in report.violations:
        report_violation(finding.message, finding.urn)
    if report.violations:
        return
    if report.unknown:
        # What the SDK raises itself when a policy reads an unknown value: the engine shows it as an
        # advisory "can't run policy ... during preview" instead of a pass or a failure.
        error = UnknownValueError(UNKNOWN_STRING_VALUE, [report.unknown[0]])
        error.message = "not known until the update: " + "; ".join(report.unknown)
        raise error
    if report.not_applicable:
        not_applicable(report.not_applicable)


def _resource(args: ResourceValidationArgs) -> rules.Resource:
    return rules.Resource(type=args.resource_type, props=plain(args.props), urn=args.urn, name=args.name,
                          protect=bool(args.opts.protect))


def _strings(config: Mapping[str, Any], key: str, default: Sequence[str]) -> tuple[str, ...]:
    value = config.get(key)
    return tuple(str(v) for v in value) if isinstance(value, Sequence) and not isinstance(value, str) \
        else tuple(default)


def validate_images(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    _deliver(rules.check_image_pinned(_resource(args)), report_violation, args.not_applicable)


def validate_limits(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    _deliver(rules.check_resource_limits(_resource(args)), report_violation, args.not_applicable)


def validate_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    stacks = _strings(args.get_config(), "protectedStacks", rules.DEFAULT_PROTECTED_STACKS)
    _deliver(rules.check_protected(_resource(args), stacks), report_violation, args.not_applicable)


def validate_public_ports(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    parts = _strings(args.get_config(), "publicParts", rules.DEFAULT_PUBLIC_PARTS)
    _deliver(rules.check_public_ports(_resource(args), parts), report_violation, args.not_applicable)


def validate_swarm_rollout(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    _deliver(rules.check_swarm_rollout(_resource(args)), report_violation, args.not_applicable)


def validate_budget(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    percent = args.get_config().get("limitPercent", rules.DEFAULT_BUDGET_PERCENT)
    resources = [rules.Resource(type=r.resource_type, props=plain(r.props), urn=r.urn, name=r.name,
                                protect=bool(r.opts.protect)) for r in args.resources]
    _deliver(rules.check_connection_budget(resources, int(percent)), report_violation, args.not_applicable)


def validate_digests(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    stacks = _strings(args.get_config(), "stacks", ())
    resources = [rules.Resource(type=r.resource_type, props=plain(r.props), urn=r.urn, name=r.name,
                                protect=bool(r.opts.protect)) for r in args.resources]
    _deliver(rules.check_image_digests(resources, stacks), report_violation, args.not_applicable)


POLICIES = [
    ResourceValidationPolicy(
        name="banyan-swarm-rollout",
        description="Every Swarm service waits for convergence, rolls a failed update back and restarts failed "
                    "tasks.",
        validate=validate_swarm_rollout,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="banyan-pinned-images",
        description="Images are pinned to a version tag (optionally a digest): never `latest`, never untagged.",
        validate=validate_images,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="banyan-resource-limits",
        description="Every container has a CPU and a memory limit (Docker memory and cpus; Kubernetes "
                    "resources.limits).",
        validate=validate_limits,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="banyan-protect-stateful",
        description="In protected stacks (prod), volumes, PVCs, the namespace, StatefulSets and the "
                    "database and broker clusters carry `protect`.",
        validate=validate_protected,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties={
            "protectedStacks": {"type": "array", "items": {"type": "string"},
                                "default": list(rules.DEFAULT_PROTECTED_STACKS)},
        }),
    ),
    ResourceValidationPolicy(
        name="banyan-no-public-ports",
        description="Nothing but the load balancer (nginx) is reachable from beyond the Docker host or "
                    "the cluster.",
        validate=validate_public_ports,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties={
            "publicParts": {"type": "array", "items": {"type": "string"},
                            "default": list(rules.DEFAULT_PUBLIC_PARTS)},
        }),
    ),
    StackValidationPolicy(
        name="banyan-connection-budget",
        description="Database clients' largest instance counts times their pool max stay under 80% of "
                    "PostgreSQL's max_connections.",
        validate=validate_budget,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties={
            "limitPercent": {"type": "integer", "minimum": 1, "maximum": 100,
                             "default": rules.DEFAULT_BUDGET_PERCENT},
        }),
    ),
    StackValidationPolicy(
        name="banyan-image-digests",
        description="In a stack that sets banyan:require_digests (or that the pack's `stacks` config names), "
                    "every image carries an @sha256: digest.",
        validate=validate_digests,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties={
            "stacks": {"type": "array", "items": {"type": "string"}, "default": []},
        }),
    ),
]

if __name__ == "__main__":
    # Serves the engine over gRPC until it is stopped; never reached on import.
    PolicyPack(name=PACK_NAME, policies=list(POLICIES), enforcement_level=EnforcementLevel.MANDATORY)
