"""Redis for the platform: a standalone server or a Redis Cluster, with its config renderers."""

from components.redis.config import cluster_create_script, redis_conf, start_script
from components.redis.docker import RedisCluster

__all__ = ["RedisCluster", "cluster_create_script", "redis_conf", "start_script"]
