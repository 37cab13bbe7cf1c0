"""The monitoring part's image pins (Docker; Kubernetes' Redis exporter sidecar too).

Each is the release Debian 12 ships as a package (prometheus 2.42.0, prometheus-alertmanager 0.25.0,
prometheus-postgres-exporter 0.11.1, prometheus-redis-exporter 1.45.0): the real-server suite runs those
packages on the very files these images are given, so the pinned versions are the proven ones. No digest is
known for them here. mtail's authors publish no image; banyan:monitoring.mtail_image names one."""

from __future__ import annotations

from model.pins import Pin

PROMETHEUS = Pin("prom/prometheus", "v2.42.0", None)
ALERTMANAGER = Pin("prom/alertmanager", "v0.25.0", None)
POSTGRES_EXPORTER = Pin("quay.io/prometheuscommunity/postgres-exporter", "v0.11.1", None)
# The Alpine variant: the plain image is FROM scratch, with no wget for the health check.
REDIS_EXPORTER = Pin("oliver006/redis_exporter", "v1.45.0-alpine", None)
# cAdvisor's maintainers publish their images on GitHub's registry from v0.53.0 on (gcr.io/cadvisor/cadvisor before;
# upstream's README and publish-container workflow: tags `v<version>` and `<version>`). Debian packages no cAdvisor:
# the e2e suite runs scripts/build-cadvisor's build of the same release (its library modules, scripts/cadvisor).
CADVISOR = Pin("ghcr.io/google/cadvisor", "v0.61.0", None)
