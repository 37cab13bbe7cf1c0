"""The RabbitMQ cluster on Kubernetes: a RabbitmqCluster run by the RabbitMQ Cluster Operator (Helm-installed)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common as kc
from components.rabbitmq.config import render_operator_config
from components.seam import Built
from components.secrets import RabbitMQCredentials
from components.target import KubernetesTarget
from model.images import parse_image
from model.spec import RabbitMQSpec

# The operator, installed the way issue 5 asks: a pinned Helm chart in its own namespace. RabbitMQ publishes no
# chart of its own (only the cluster-operator.yml manifest), and Bitnami's chart stopped at operator 2.16 with
# its images withdrawn (2025); CloudPirates' Apache-2.0 chart tracks upstream, runs the upstream ghcr.io images
# and is cosign-signed. Chart 0.4.0 ships cluster-operator v2.22.1, the line of the CRD our tests validate against.
OPERATOR_NAMESPACE = "rabbitmq-system"
OPERATOR_RELEASE = "rabbitmq-cluster-operator"
CHART = "oci://registry-1.docker.io/cloudpirates/rabbitmq-cluster-operator"
CHART_VERSION = "0.4.0"
OPERATOR_VERSION = "2.22.1"
# The messaging-topology operator (on by default in the chart) needs webhook certificates and manages queues and
# users as custom resources; the platform declares its queues from the apps, so it stays off.
CHART_VALUES: dict[str, Any] = {"msgTopologyOperator": {"enabled": False}}

API_VERSION = "rabbitmq.com/v1beta1"
KIND = "RabbitmqCluster"

# Ports the operator gives every node; fixed by the operator, not settable through the RabbitmqCluster.
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672
PROMETHEUS_PORT = 15692
EPMD_PORT = 4369
DISTRIBUTION_PORT = 25672
CLI_PORT_RANGE = (35672, 35682)

# Operator 2.22+ probes startup over HTTP (/api/health/checks/reached-target-cluster-size), which RabbitMQ serves
# from 4.2.4; older brokers need this annotation or their pods never become ready.
LEGACY_STARTUP_PROBE = "rabbitmq.com/legacy-startup-probe"
HTTP_STARTUP_PROBE_SINCE = (4, 2, 4)
# `pulumi up` waits for every node to be ready (the operator's own condition) instead of returning at creation.
WAIT_FOR = {"pulumi.com/waitFor": "condition=AllReplicasReady"}



def client_service_name(spec: RabbitMQSpec) -> str:
    """The operator names the client Service (AMQP, management, metrics) after the RabbitmqCluster."""
    return spec.name


def default_user_secret_name(spec: RabbitMQSpec) -> str:
    """The name the operator would give its own generated default-user Secret (kubectl-rabbitmq looks there)."""
    return f"{spec.name}-default-user"


def image_version(image: str) -> tuple[int, ...] | None:
    """`major.minor[.patch]` from the image tag, when the tag carries one (`rabbitmq:4.2.6-management`)."""
    numbers = parse_image(image).version()
    return numbers if numbers is not None and len(numbers) >= 2 else None


def needs_legacy_startup_probe(spec: RabbitMQSpec) -> bool:
    """True unless the broker is known to serve the HTTP startup check (4.2.4+). The tag's patch level decides
    within 4.2; without one, `spec.version` decides and 4.2 counts as too old (the legacy probe works on all)."""
    found = image_version(spec.image)
    major, minor = (int(x) for x in spec.version.split(".")[:2])
    if found is not None and len(found) == 3 and found[:2] == (major, minor):
        return found < HTTP_STARTUP_PROBE_SINCE
    return (major, minor) <= HTTP_STARTUP_PROBE_SINCE[:2]


def persistence(spec: RabbitMQSpec, storage_class: str | None) -> dict[str, str]:
    """A PersistentVolumeClaim per node; without persistence the operator's documented `storage: 0` puts the data
    directory on an emptyDir (kept across container restarts, lost with the pod)."""
    if not spec.persistence:
        return {"storage": "0Gi"}
    claim = {"storage": f"{spec.storage_gib}Gi"}
    if storage_class is not None:
        claim["storageClassName"] = storage_class
    return claim


def cluster_spec(spec: RabbitMQSpec, target: KubernetesTarget) -> dict[str, Any]:
    """The RabbitmqCluster's `spec`: plain data, a pure function of the spec and the target."""
    if (spec.port, spec.management_port) != (AMQP_PORT, MANAGEMENT_PORT):
        raise ValueError(f"the RabbitMQ Cluster Operator listens on {AMQP_PORT}/{MANAGEMENT_PORT}, "
                         f"not {spec.port}/{spec.management_port}")
    selector = target.selector(spec.name)
    return {
        "replicas": spec.nodes,
        "image": spec.image,
        "resources": kc.resources_dict(spec.resources),
        "persistence": persistence(spec, target.spec.kubernetes.storage_class),
        "rabbitmq": {"additionalConfig": render_operator_config(spec)},
        # The operator then creates no default-user Secret of its own (with a random password) and mounts ours:
        # its `default_user.conf` becomes conf.d/11-default_user.conf, read at the first boot of an empty node.
        "secretBackend": {"externalSecret": {"name": default_user_secret_name(spec)}},
        "override": {
            "statefulSet": {
                "spec": {
                    "template": {
                        # The operator labels its pods app.kubernetes.io/name=<cluster>, component and part-of
                        # rabbitmq; the instance label completes target.selector(), which NetworkPolicies use.
                        # Only labels are merged in: the StatefulSet's own selector stays the operator's.
                        "metadata": {"labels": selector},
                        "spec": {
                            # Required by the override's schema; an empty list changes no container.
                            "containers": [],
                            # One node per host where possible (the operator adds its own per-zone spread).
                            "topologySpreadConstraints": [{
                                "maxSkew": 1,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": selector},
                            }],
                        },
                    },
                },
            },
        },
    }


def cluster_annotations(spec: RabbitMQSpec) -> dict[str, str]:
    annotations = dict(WAIT_FOR)
    if needs_legacy_startup_probe(spec):
        annotations[LEGACY_STARTUP_PROBE] = "true"
    return dict(sorted(annotations.items()))


def operator_release(parent: pulumi.Resource, name: str, target: KubernetesTarget) -> k8s.helm.v3.Release:
    """The operator's Helm release. Retained on delete: turning `install_operators` off means the cluster runs
    the operator by other means, and uninstalling it (and maybe its CRD) would take every RabbitmqCluster along."""
    return k8s.helm.v3.Release(
        f"{name}-operator",
        name=OPERATOR_RELEASE,
        chart=CHART,
        version=CHART_VERSION,
        namespace=OPERATOR_NAMESPACE,
        create_namespace=True,
        values=CHART_VALUES,
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True, protect=target.spec.protect),
    )


def default_user_secret(parent: pulumi.Resource, name: str, spec: RabbitMQSpec, credentials: RabbitMQCredentials,
                        target: KubernetesTarget) -> k8s.core.v1.Secret:
    """The admin, in the format the operator's externalSecret expects (`default_user.conf`) plus the keys of its
    own default-user Secret (service binding). Retained with the cluster: its pods mount it at every start."""
    conf = pulumi.Output.format("default_user = {0}\ndefault_pass = {1}\n", credentials.admin_user,
                                credentials.admin_password)
    data: dict[str, pulumi.Input[str]] = {
        "default_user.conf": conf,
        "username": credentials.admin_user,
        "password": credentials.admin_password,
        "host": f"{client_service_name(spec)}.{target.namespace_name}.svc",
        "port": str(AMQP_PORT),
        "provider": "rabbitmq",
        "type": "rabbitmq",
    }
    return k8s.core.v1.Secret(
        f"{name}-default-user",
        metadata=target.metadata(default_user_secret_name(spec), spec.name),
        type="Opaque",
        string_data={k: pulumi.Output.secret(data[k]) for k in sorted(data)},
        opts=target.opts(parent, stateful=True),
    )


def build(parent: pulumi.Resource, name: str, spec: RabbitMQSpec, *, credentials: RabbitMQCredentials,
          target: KubernetesTarget) -> Built:
    """The operator (unless the cluster already runs one), the admin Secret, the RabbitmqCluster and its budget.
    Apps connect to the operator's client Service; the management UI stays inside the cluster
    (`kubectl port-forward svc/<cluster> 15672`).

    The Erlang cookie is the operator's: it generates one into `<cluster>-erlang-cookie` on first reconcile and
    never rewrites it. A Secret of ours under that name would be adopted (owner reference, labels reset on every
    reconcile), so Pulumi and the operator would fight over it; `credentials.erlang_cookie` stays Docker-only.
    """
    release = operator_release(parent, name, target) if target.spec.kubernetes.install_operators else None
    secret = default_user_secret(parent, name, spec, credentials, target)
    cluster = k8s.apiextensions.CustomResource(
        f"{name}-cluster",
        api_version=API_VERSION,
        kind=KIND,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=spec.name, namespace=target.namespace_name,
                                            labels=target.labels(spec.name), annotations=cluster_annotations(spec)),
        spec=cluster_spec(spec, target),
        opts=target.opts(parent, stateful=True, depends_on=[secret, *([release] if release else [])]),
    )
    # Voluntary disruptions (node drains) take one node at a time; the operator's preStop hook additionally
    # waits until no quorum queue would lose its majority.
    kc.disruption_budget(f"{name}-pdb", target=target, part=spec.name, parent=parent, object_name=spec.name)
    return Built(hosts=[client_service_name(spec)], port=spec.port, wait_on=[cluster])
