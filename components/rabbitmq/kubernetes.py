"""The RabbitMQ cluster on Kubernetes: a RabbitmqCluster run by the RabbitMQ Cluster Operator (Helm-installed)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common as kc
from components.rabbitmq.config import APP_VHOST, render_operator_config
from components.seam import Built
from components.secrets import RabbitMQCredentials
from components.target import KubernetesTarget
from model import pins
from model.images import parse_image
from model.spec import RabbitMQSpec

# The operator, installed the way issue 5 asks: a pinned Helm chart in its own namespace. RabbitMQ publishes no
# chart of its own (only the cluster-operator.yml manifest), and Bitnami's chart stopped at operator 2.16 with
# its images withdrawn (2025); CloudPirates' Apache-2.0 chart tracks upstream, runs the upstream ghcr.io images
# and is cosign-signed. The chart's pin is in model/pins.py; it ships the RabbitmqCluster CRD of cluster-operator
# v2.22.1, the one our tests validate against.
OPERATOR_NAMESPACE = "rabbitmq-system"
OPERATOR_RELEASE = "rabbitmq-cluster-operator"
CHART = "oci://registry-1.docker.io/cloudpirates/rabbitmq-cluster-operator"
CHART_VERSION = pins.RABBITMQ_CHART_VERSION
OPERATOR_VERSION = pins.RABBITMQ_OPERATOR_VERSION
# The Messaging Topology Operator (the chart's msgTopologyOperator, on by default there; spelled out here) turns
# the User and Permission objects below into RabbitMQ users through the management API, as the cluster's default
# user. Its admission webhook needs a certificate: without cert-manager (useCertManager false, the chart's
# default) the chart generates a CA and certificate into a Secret at install and looks them up again on
# upgrades, so they stay put. The queues stay the apps' to declare.
CHART_VALUES: dict[str, Any] = {"msgTopologyOperator": {"enabled": True}}

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
# `pulumi up` waits (pulumi-kubernetes' default 10 minutes) until every node is ready and the operator reconciled
# this generation: a refused update (a scale-down, a volume shrink: ReconcileSuccess False) fails the `up` when
# the wait ends instead of passing with nothing applied (the preflight refuses both at preview first), and
# pulumi-kubernetes shows the operator's Warning event (`UnsupportedOperation: Cluster Scale down not supported`)
# while it waits. A JSON list means all of them (pulumi-kubernetes metadata.ReadyCondition); each `condition=`
# waits for status True at the object's current generation (status.observedGeneration), as `kubectl wait` does.
WAIT_CONDITIONS = ("AllReplicasReady", "ReconcileSuccess")
WAIT_FOR = {"pulumi.com/waitFor": json.dumps([f"condition={c}" for c in WAIT_CONDITIONS])}
# The Messaging Topology Operator's objects (User, Permission), whose controller reports `Ready` once RabbitMQ
# has the user (or the permission): `pulumi up` waits for it, so a refused user fails the update.
TOPOLOGY_WAIT_FOR = {"pulumi.com/waitFor": json.dumps(["condition=Ready"])}
# The tags a User may carry (the users.rabbitmq.com CRD's enum); none means messaging protocols only, no
# management UI or HTTP API at all.
USER_TAGS = ("management", "policymaker", "monitoring", "administrator")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")



def client_service_name(spec: RabbitMQSpec) -> str:
    """The operator names the client Service (AMQP, management, metrics) after the RabbitmqCluster."""
    return spec.name


def statefulset_name(spec: RabbitMQSpec) -> str:
    """The operator's StatefulSet of the nodes (pods `<cluster>-server-<i>`)."""
    return f"{spec.name}-server"


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
        # After every upgrade the operator enables all stable feature flags (`rabbitmqctl enable_feature_flag
        # all` once all pods are ready and updated): the next series starts only on a cluster that enabled its
        # predecessor's (4.x all of 3.13's, 4.3 all of 4.2's). The Docker nodes' entrypoint does the same.
        "autoEnableAllFeatureFlags": True,
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


@dataclass(frozen=True)
class VhostPermissions:
    """What a user may do in one vhost: regular expressions over resource names (RabbitMQ's configure, write and
    read permissions). The default is everything in the applications' vhost, as on Docker."""

    vhost: str = APP_VHOST
    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"


@dataclass(frozen=True)
class TopologyUser:
    """The objects of one RabbitMQ user made by the Messaging Topology Operator: its credentials Secret, the User
    and, when it has permissions, the Permission. Depend on `wait_on` to use the user."""

    secret: k8s.core.v1.Secret
    user: k8s.apiextensions.CustomResource
    permission: k8s.apiextensions.CustomResource | None

    @property
    def wait_on(self) -> list[pulumi.Resource]:
        return [self.user, *([self.permission] if self.permission is not None else [])]


def user_object_name(spec: RabbitMQSpec, username: str) -> str:
    """The User object (and, with suffixes, its Secret and Permission) of `username` on this cluster."""
    name = f"{spec.name}-{username}"
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise ValueError(f"RabbitMQ user {username!r}: the object name {name!r} must be a DNS label (lower-case "
                         "letters, digits and '-', at most 63 characters)")
    return name


def user_credentials_secret_name(spec: RabbitMQSpec, username: str) -> str:
    return f"{user_object_name(spec, username)}-credentials"


def user_spec(spec: RabbitMQSpec, username: str, tags: Sequence[str] = ()) -> dict[str, Any]:
    """A User's `spec`: the user of the credentials Secret (keys `username` and `password`; the operator watches
    it and sets a changed password in RabbitMQ, as the users.rabbitmq.com CRD documents), on the cluster of
    `spec`, with exactly `tags`."""
    unknown = [t for t in tags if t not in USER_TAGS]
    if unknown:
        raise ValueError(f"RabbitMQ user {username!r}: unknown tags {unknown}; a User may carry {list(USER_TAGS)}")
    return {
        "rabbitmqClusterReference": {"name": spec.name},
        "importCredentialsSecret": {"name": user_credentials_secret_name(spec, username)},
        # Exactly these: none means messaging protocols only.
        "tags": sorted(set(tags)),
    }


def permission_spec(spec: RabbitMQSpec, username: str, permissions: VhostPermissions) -> dict[str, Any]:
    """A Permission's `spec`: `permissions` for the User object of `username` (its user and vhost cannot change
    later; a change replaces the Permission)."""
    return {
        "rabbitmqClusterReference": {"name": spec.name},
        "userReference": {"name": user_object_name(spec, username)},
        "vhost": permissions.vhost,
        "permissions": {"configure": permissions.configure, "write": permissions.write,
                        "read": permissions.read},
    }


def topology_user(parent: pulumi.Resource, name: str, spec: RabbitMQSpec, target: KubernetesTarget, *,
                  username: str, password: pulumi.Input[str], tags: Sequence[str] = (),
                  permissions: VhostPermissions | None = VhostPermissions(),
                  depends_on: Sequence[pulumi.Resource] = ()) -> TopologyUser:
    """A RabbitMQ user of the cluster `spec`, made and kept by the Messaging Topology Operator: a Secret with its
    credentials, a User with `tags` (none: messaging only, no management) and, unless `permissions` is None, a
    Permission on one vhost (one per user: more vhosts would need more Permissions). `depends_on`: the cluster
    (and the operator's release, which installs the CRDs).

    Reusable for any user: the applications' (no tags, everything in their vhost), a `monitoring` user for a
    metrics scraper (tags=("monitoring",), read-only permissions), ...
    """
    object_name = user_object_name(spec, username)
    data: dict[str, pulumi.Input[str]] = {"username": username, "password": password}
    secret = k8s.core.v1.Secret(
        f"{name}-user-{username}-credentials",
        metadata=target.metadata(user_credentials_secret_name(spec, username), spec.name),
        type="Opaque",
        string_data={k: pulumi.Output.secret(data[k]) for k in sorted(data)},
        opts=target.opts(parent),
    )
    user = k8s.apiextensions.CustomResource(
        f"{name}-user-{username}",
        api_version=API_VERSION,
        kind="User",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=target.namespace_name,
                                            labels=target.labels(spec.name), annotations=dict(TOPOLOGY_WAIT_FOR)),
        spec=user_spec(spec, username, tags),
        opts=target.opts(parent, depends_on=[secret, *depends_on]),
    )
    permission = None
    if permissions is not None:
        permission = k8s.apiextensions.CustomResource(
            f"{name}-user-{username}-permission",
            api_version=API_VERSION,
            kind="Permission",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{object_name}-permission",
                                                namespace=target.namespace_name, labels=target.labels(spec.name),
                                                annotations=dict(TOPOLOGY_WAIT_FOR)),
            spec=permission_spec(spec, username, permissions),
            opts=pulumi.ResourceOptions.merge(
                target.opts(parent, depends_on=[user, *depends_on]),
                # The operator's webhook refuses a change of user or vhost: such a change is a new Permission.
                pulumi.ResourceOptions(replace_on_changes=["spec.vhost", "spec.userReference"],
                                       delete_before_replace=True),
            ),
        )
    return TopologyUser(secret=secret, user=user, permission=permission)


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
    if release is not None:
        kc.restricted_operator_namespace(f"{name}-operator-namespace", OPERATOR_NAMESPACE, parent=parent,
                                         release=release)
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
    # The applications' own user: their vhost only, no management tags (as on Docker); the admin stays the
    # operators' (and the Topology Operator's, which acts as the cluster's default user).
    app = topology_user(parent, name, spec, target, username=credentials.app_user,
                        password=credentials.app_password, tags=(),
                        depends_on=[cluster, *([release] if release else [])])
    return Built(hosts=[client_service_name(spec)], port=spec.port, wait_on=[cluster, *app.wait_on])
