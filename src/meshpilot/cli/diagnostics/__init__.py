"""istioctl-grade diagnostics: proxy-status, proxy-config, logs, stats, describe.

One registration call for `main.py`; each command lives in its own module.
"""

from __future__ import annotations

import argparse

from .describe import add_describe_command
from .logs import add_logs_command
from .proxy_config import add_proxy_config_command
from .proxy_status import add_proxy_status_command
from .stats import add_stats_command


def add_diagnostics_commands(sub: argparse._SubParsersAction) -> None:
    """proxy-status (ps), proxy-config (pc), logs, stats, describe."""
    add_proxy_status_command(sub)
    add_proxy_config_command(sub)
    add_logs_command(sub)
    add_stats_command(sub)
    add_describe_command(sub)
