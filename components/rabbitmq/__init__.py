"""The RabbitMQ cluster, quorum queues by default: Docker nodes cluster by classic config, Kubernetes by operator."""

from components.rabbitmq.component import RabbitMQCluster
from components.rabbitmq.config import (
    render_enabled_plugins,
    render_entrypoint,
    render_operator_config,
    render_rabbitmq_conf,
)

__all__ = [
    "RabbitMQCluster",
    "render_enabled_plugins",
    "render_entrypoint",
    "render_operator_config",
    "render_rabbitmq_conf",
]
