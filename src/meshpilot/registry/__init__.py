"""Mesh services and endpoints, built from Service, ServiceEntry and WorkloadEntry."""

from .build import Registry, build_registry, host_aliases, kubernetes_hostname
from .model import Endpoint, ServiceInstance, ServicePort

__all__ = [
    "Endpoint",
    "Registry",
    "ServiceInstance",
    "ServicePort",
    "build_registry",
    "host_aliases",
    "kubernetes_hostname",
]
