# ruff: noqa: E501  (the docstring holds a Markdown table: one row per line)
"""The shipped image and chart pins: one table, the config defaults and the components read them from here.

Every pin was chosen on 2026-12-01 from the newest release its source listed; the sources are mirrors of
public repositories as of August 2026 (docker-library/official-images at 2026-08-22), so a release published
after that is not known here. A digest is carried only where a source names it for exactly that tag; the
official-images library files list tags and git commits, never digests, so most pins have none (the table
says so). A digest names the bits pulled when the source recorded it: an official image tag is rebuilt
(base image, bundled tools) under the same name, and the digest stays on the bits that were checked.

| image | pin | digest | chosen | why this line | source |
|---|---|---|---|---|---|
| PostgreSQL (Docker) | `postgres:16.15-alpine` | none known | 2026-12-01 | stays on major 16: a major upgrade rewrites the data directory (pg_upgrade or dump/restore), which the stack refuses at preview; 16.15 is 16's newest patch | docker-library/official-images library/postgres (2026-08-13, #22048) |
| PostgreSQL (Kubernetes, CloudNativePG operand) | `ghcr.io/cloudnative-pg/postgresql:16.15-202608170814-standard-bookworm` | `sha256:0d51ec3786f2b3c7022756c32e04cc5d575f4666c51599ef5b08552529bfac6d` | 2026-12-01 | the same server as the Docker pin, in CloudNativePG's standard flavour on Debian 12 (fixed C library, fixed collations); the immutable build tag | cloudnative-pg/artifacts image-catalogs/catalog-standard-bookworm.yaml (signed, 2026-08-17) |
| RabbitMQ | `rabbitmq:4.3.5-management-alpine` | `sha256:669e803629d3bb9bd77f6c51772a51bfa59a84f9ab194393639980b866613bf2` | 2026-12-01 | 4.3 is the only series with community support (the latest minor of the latest major, rabbitmq-server COMMUNITY_SUPPORT.md); 4.1+ carries the peer-discovery start-up fix (rabbitmq-server#13050) and 4.2.4+ serves the operator's HTTP startup probe. In place it is reached from 3.13 through 4.2 (README) | docker-library/official-images library/rabbitmq (#22072, 2026-08-18); the digest from CloudPirates-io/helm-charts rabbitmq-cluster-operator values.yaml (2026-08-20, #1623), the build of docker-library/rabbitmq f434316 |
| Redis | `redis:7.4.11-alpine` | none known | 2026-12-01 | the same line as before (7.4: same files, same data format, same licence); 7.4.11 carries the Lua fixes of 7.4.6 (CVE-2025-49844 and three more, official-images#20011) and the security releases of 2026-07-24 and 2026-08-18 (#22078). 8.x bundles modules and changes licence: a choice for its own issue | docker-library/official-images library/redis (2026-08-18, #22078) |
| Nginx | `nginx:1.31.4-alpine` | `sha256:db35bfc6b2951e7f8a72db5db120288c127ffaeeb4a6d4b95a26fead017d5913` | 2026-12-01 | mainline, the line nginx recommends and fixes first; upstream `server ... resolve` (open source since 1.27.3) is there, so Kubernetes follows the gateway pods | docker-library/official-images library/nginx (2026-08-19, #22101); the digest from CloudPirates-io/helm-charts nginx values.yaml |
| dev placeholder (gateway, services) | `python:3.12.14-alpine` | none known | 2026-12-01 | 3.12's newest patch; only Pulumi.dev.yaml uses it, until banyan-core's images are set | docker-library/official-images library/python (2026-08-13, #22049) |
| CloudNativePG chart | `cloudnative-pg` 0.29.0 (operator 1.30.0) | chart | 2026-12-01 | the newest chart and operator release; its CRDs are the ones the tests validate against | cloudnative-pg/charts Chart.yaml (2026-06-29), cloudnative-pg/cloudnative-pg tag v1.30.0 |
| Barman Cloud plugin chart | `plugin-barman-cloud` 0.7.0 (plugin 0.13.0) | chart | 2026-12-01 | CloudNativePG's backup plugin (CNPG-I), replacing the operator's built-in Barman support deprecated in 1.30; the newest chart; the ObjectStore CRD the tests validate against | cloudnative-pg/charts charts/plugin-barman-cloud/Chart.yaml (2026-07-20) |
| RabbitMQ Cluster Operator chart | `rabbitmq-cluster-operator` 0.6.5 (CloudPirates; runs cluster-operator 2.22.4) | chart | 2026-12-01 | the newest chart; the same RabbitmqCluster CRD (cluster-operator v2.22.1) as 0.4.0, with the operator's patch releases since | CloudPirates-io/helm-charts charts/rabbitmq-cluster-operator/Chart.yaml (2026-08-20) |
| KEDA chart (only where a service scales on queue depth) | `keda` 2.20.2 (KEDA 2.20.2) | chart | 2026-12-01 | the newest chart and release; its ScaledObject and TriggerAuthentication CRDs have the schema of the v2.20 CRDs the tests validate against (only controller-gen's version annotation differs) | kedacore/charts keda/Chart.yaml (2026-08-13), kedacore/keda tag v2.20.2 |
"""

from __future__ import annotations

from dataclasses import dataclass

CHOSEN = "2026-12-01"


@dataclass(frozen=True)
class Pin:
    """One image: `repository:tag`, and the digest a source confirmed for it (None: none known)."""

    repository: str
    tag: str
    digest: str | None

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def ref(self) -> str:
        """What a stack pulls: the tag, and the digest where one is known (Docker then checks the bits)."""
        return self.tagged + (f"@{self.digest}" if self.digest else "")


POSTGRES = Pin("postgres", "16.15-alpine", None)
POSTGRES_MAJOR = 16
RABBITMQ = Pin("rabbitmq", "4.3.5-management-alpine",
               "sha256:669e803629d3bb9bd77f6c51772a51bfa59a84f9ab194393639980b866613bf2")
RABBITMQ_SERIES = "4.3"
REDIS = Pin("redis", "7.4.11-alpine", None)
REDIS_SERIES = "7.4"
NGINX = Pin("nginx", "1.31.4-alpine", "sha256:db35bfc6b2951e7f8a72db5db120288c127ffaeeb4a6d4b95a26fead017d5913")
PLACEHOLDER = Pin("python", "3.12.14-alpine", None)

# CloudNativePG's operand images, from its signed catalog (catalog-standard-bookworm.yaml, 2026-08-17): the
# immutable build tag and digest per (major, minor). A PostgreSQL of another minor gets the moving
# `<major.minor>-standard-bookworm` tag (components/postgres/kubernetes.py).
CNPG_OPERANDS: dict[tuple[int, int], Pin] = {
    (14, 24): Pin("ghcr.io/cloudnative-pg/postgresql", "14.24-202608170814-standard-bookworm",
                  "sha256:079783b585ec65ecb77702fb602053f9b0b4dc0e5b55c65faee43f21ce0d8380"),
    (15, 19): Pin("ghcr.io/cloudnative-pg/postgresql", "15.19-202608170814-standard-bookworm",
                  "sha256:26ba4982eec1879a5fee632ccccdf37ff709250b1740e2a803468c5d34e98043"),
    (16, 15): Pin("ghcr.io/cloudnative-pg/postgresql", "16.15-202608170814-standard-bookworm",
                  "sha256:0d51ec3786f2b3c7022756c32e04cc5d575f4666c51599ef5b08552529bfac6d"),
    (17, 11): Pin("ghcr.io/cloudnative-pg/postgresql", "17.11-202608170816-standard-bookworm",
                  "sha256:968fde04bca2be879ca14e1614a3987e149b77b42a51fe460fff252f3e145fce"),
    (18, 6): Pin("ghcr.io/cloudnative-pg/postgresql", "18.6-202608170814-standard-bookworm",
                 "sha256:9446e83aa490df3f14ebf5bf2f6002a1347728690ff38f35dd7a85b925a62468"),
}

CNPG_CHART_VERSION = "0.29.0"
CNPG_OPERATOR_VERSION = "1.30.0"
BARMAN_CLOUD_CHART_VERSION = "0.7.0"
BARMAN_CLOUD_PLUGIN_VERSION = "0.13.0"
RABBITMQ_CHART_VERSION = "0.6.5"
RABBITMQ_OPERATOR_VERSION = "2.22.4"  # the chart's values (its appVersion still says 2.22.3)
KEDA_CHART_VERSION = "2.20.2"
KEDA_VERSION = "2.20.2"  # the chart's appVersion

# The pins the stack had before 2026-12-01 (issue 14): what a running stack may still hold. The README's upgrade
# section starts from these.
PREVIOUS = {"postgres": "postgres:16.9-alpine", "rabbitmq": "rabbitmq:3.13.7-management-alpine",
            "redis": "redis:7.4.2-alpine", "nginx": "nginx:1.27.3-alpine"}

BEGIN = "<!-- pins:begin (generated by `python -m tooling.docs` from model/pins.py; do not edit by hand) -->"
END = "<!-- pins:end -->"


def table() -> str:
    """The docstring's table, as the README carries it."""
    doc = __doc__ or ""
    return doc[doc.index("| image |"):].strip()
