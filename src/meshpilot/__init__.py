"""meshpilot: Istio's traffic management on real Envoy, driven by a Python control plane."""

__version__ = "0.1.0"
