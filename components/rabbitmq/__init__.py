"""The RabbitMQ cluster: quorum queues by default, nodes clustered by classic-config peer discovery."""

from components.rabbitmq.config import render_enabled_plugins, render_entrypoint, render_rabbitmq_conf
from components.rabbitmq.docker import RabbitMQCluster

__all__ = ["RabbitMQCluster", "render_enabled_plugins", "render_entrypoint", "render_rabbitmq_conf"]
