"""The monitoring part: exporters, Prometheus and Alertmanager (Docker), monitors and rules (Kubernetes)."""

from components.monitoring.component import Monitoring

__all__ = ["Monitoring"]
