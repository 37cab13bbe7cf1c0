"""The Nginx load balancer in front of the API gateway instances."""

from components.nginx.config import render_nginx_conf
from components.nginx.docker import NginxLoadBalancer

__all__ = ["NginxLoadBalancer", "render_nginx_conf"]
