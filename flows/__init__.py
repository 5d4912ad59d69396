"""Prefect flows over the bertplat library: thin sequencers with retries, artifacts and progress logs.

Importing this package sets Prefect defaults that suit a machine without internet before Prefect is
imported: no telemetry, a generous ephemeral-server start-up timeout, and bertplat's own loggers
forwarded into the flow-run logs (that is where the stages' progress lines appear). Values already
in the environment win.

It also works around a Prefect 3.8 bug that breaks forked child processes, such as DataLoader
workers started inside a flow run: see ``_drop_inherited_prefect_exit_hooks``.
"""

import os
import sys
import threading

for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "bertplat",
}.items():
    os.environ.setdefault(_key, _value)


def _drop_inherited_prefect_exit_hooks() -> None:
    """In a forked child, forget the interpreter-exit hooks of the parent's Prefect services.

    Prefect's queue services (the API log and event workers a flow run starts) register a
    ``threading`` exit hook. Prefect resets the services after a fork but leaves the hook, which then
    fails an assertion when the child exits, so the child exits with code 1 after doing its work.
    A forked DataLoader worker that ends that way makes torch raise "DataLoader worker exited
    unexpectedly" in the training process when the loader shuts down (after every validation loop).
    The child never ran those services, so it has nothing to drain.
    """
    services = sys.modules.get("prefect._internal.concurrency.services")
    base = getattr(services, "_QueueServiceBase", None)
    hooks = getattr(threading, "_threading_atexits", None)
    if not isinstance(base, type) or not isinstance(hooks, list):
        return  # Prefect not imported in the parent, or internals this workaround does not know

    def owner(hook: object) -> object:  # hooks are stored as functools.partial(bound method)
        return getattr(getattr(hook, "func", hook), "__self__", None)

    hooks[:] = [hook for hook in hooks if not isinstance(owner(hook), base)]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_prefect_exit_hooks)
