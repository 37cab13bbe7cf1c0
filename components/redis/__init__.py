"""Redis for the platform: a standalone server or a Redis Cluster, with its config renderers."""

from components.redis.component import RedisCluster
from components.redis.config import render_cluster_create_script, render_redis_conf, render_start_script

__all__ = ["RedisCluster", "render_cluster_create_script", "render_redis_conf", "render_start_script"]
