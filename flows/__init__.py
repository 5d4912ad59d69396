"""Prefect flows over the bertplat library: thin sequencers with retries, artifacts and progress logs.

Importing this package sets Prefect defaults that suit a machine without internet before Prefect is
imported: no telemetry, a generous ephemeral-server start-up timeout, and bertplat's own loggers
forwarded into the flow-run logs (that is where the stages' progress lines appear). Values already
in the environment win.
"""

import os

for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "bertplat",
}.items():
    os.environ.setdefault(_key, _value)
