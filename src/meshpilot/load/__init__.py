"""`meshpilot load`: a fortio-style HTTP/1.1 load generator, usable from Python too.

    from meshpilot.load import LoadSpec, run_load
    result = run_load(LoadSpec("http://127.0.0.1:8080/", connections=4, qps=0, calls=1000))
    result.qps, result.codes, result.latency_ms["p99"], result.to_json()
"""

from .result import LoadResult
from .runner import TargetUnreachable, run_load
from .spec import DEFAULT_PERCENTILES, LoadSpec, UsageError, parse_duration

__all__ = ["DEFAULT_PERCENTILES", "LoadResult", "LoadSpec", "TargetUnreachable",
           "UsageError", "parse_duration", "run_load"]
