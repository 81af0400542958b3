"""The resolved, indexed view of the whole mesh at one store revision."""

from .config import Config
from .mesh import MergedDestinationRule, MeshConfig, MeshSnapshot, build_subset_key

__all__ = ["Config", "MergedDestinationRule", "MeshConfig", "MeshSnapshot", "build_subset_key"]
