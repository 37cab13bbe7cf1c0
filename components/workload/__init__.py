"""The stateless parts: the API gateway and each business service."""

from components.workload.component import ApiGateway, Service

__all__ = ["ApiGateway", "Service"]
