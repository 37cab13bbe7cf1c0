"""The Nginx load balancer in front of the API gateway instances."""

from components.nginx.component import NginxLoadBalancer
from components.nginx.config import render_nginx_conf

__all__ = ["NginxLoadBalancer", "render_nginx_conf"]
