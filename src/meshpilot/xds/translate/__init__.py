"""Pure translation of a mesh snapshot into the Envoy resources of one proxy."""

from .serialize import resources_to_dict, resources_to_json
from .translator import translate

__all__ = ["resources_to_dict", "resources_to_json", "translate"]
