"""The stack program: read the stack config, resolve it into a PlatformSpec, build the platform."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from infra import preflight
from model.config import parse_config
from model.errors import ConfigError
from model.spec import PlatformSpec
from model.tiers import resolve


def read_stack_config() -> tuple[dict[str, Any], frozenset[str]]:
    """All config the engine handed over, and which keys are secret.

    The language host passes config as PULUMI_CONFIG; the Automation API and the test harness set
    it in-process. Both are read, in-process values winning, as the SDK's own get_config does.
    """
    raw: dict[str, Any] = dict(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    secret = set(runtime_config.get_config_secret_keys_env())
    secret.update(k for k in raw if runtime_config.is_config_secret(k))
    return raw, frozenset(secret)


def load_spec(raw: Mapping[str, Any], *, project: str, stack: str,
              secret_keys: frozenset[str] = frozenset()) -> PlatformSpec:
    """Validate and resolve; raises ConfigError (a RunError: no traceback) listing every problem."""
    config, problems = parse_config(raw)
    if config is None:
        raise ConfigError(problems, secret_keys)
    spec, problems = resolve(config, project=project, stack=stack, secret_keys=secret_keys)
    if spec is None:
        raise ConfigError(problems, secret_keys)
    return spec


def main() -> None:
    raw, secret_keys = read_stack_config()
    spec = load_spec(raw, project=pulumi.get_project(), stack=pulumi.get_stack(), secret_keys=secret_keys)
    for warning in spec.warnings:
        pulumi.log.warn(warning)
    # What the target already runs (Docker: other stacks' ports, this stack's cluster nodes; Kubernetes: the live
    # RabbitmqCluster, Redis StatefulSet and CloudNativePG Cluster), checked before any resource is registered:
    # a refusal is a RunError at preview, never a half-applied `up`.
    preflight.run(spec, raw)
    # Imported here so that a config error never pays for (or trips on) the provider SDKs.
    from components.platform import BanyanPlatform

    BanyanPlatform("banyan", spec, opts=provider_options(spec)).export()


def provider_options(spec: PlatformSpec) -> pulumi.ResourceOptions | None:
    """The program, not a component, makes the provider: components receive it through opts.

    Docker uses the default provider (configured by `docker:host` or DOCKER_HOST); Kubernetes gets an
    explicit one from `banyan:kubernetes`, so the cluster is chosen by the stack file, not by whatever
    context is current on the machine running `pulumi up`.
    """
    if spec.target != "kubernetes":
        return None
    import pulumi_kubernetes as k8s

    kube = spec.kubernetes
    provider = k8s.Provider("kubernetes", kubeconfig=kube.kubeconfig, context=kube.context)
    return pulumi.ResourceOptions(providers=[provider])
