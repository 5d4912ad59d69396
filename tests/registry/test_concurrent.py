"""Two registrations at once, from two real processes, leave the catalog consistent: every version has one
number, all of its file rows and its view; `catalog check` agrees."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from bertplat.catalog import Catalog
from bertplat.lake import Lake
from tests.registry.conftest import write_fake_hf

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bertplat.catalog import Catalog
    from bertplat.lake import Lake
    from bertplat.registry.store import register_model

    data, go, *sources = sys.argv[1:]
    lake = Lake(data)
    catalog = Catalog(Path(data) / "catalog.duckdb", lake)
    while not Path(go).exists():
        time.sleep(0.01)
    for source in sources:
        print(register_model(source, lake, catalog, "shared").summary(), flush=True)
""")


def test_two_processes_register_at_once(tmp_path):
    data = tmp_path / "data"
    sources = [write_fake_hf(tmp_path / f"hf{i}", seed=i) for i in range(6)]
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(data), str(go), *map(str, sources[k::2])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    try:
        time.sleep(1.0)
        go.touch()  # both start registering at the same moment (after their imports)
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    lake = Lake(str(data))
    catalog = Catalog(data / "catalog.duckdb", lake)
    _, rows = catalog.fetch("SELECT number, version_id, (SELECT count(*) FROM registry_files f WHERE f.name = v.name "
                            "AND f.version_id = v.version_id) FROM registry_versions v ORDER BY number")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]  # one number each, none lost or doubled
    assert len({r[1] for r in rows}) == 6 and all(r[2] == 5 for r in rows)  # 4 files + the card, each version
    _, versions = catalog.fetch("SELECT count(*) FROM model_shared")
    assert versions == [(6,)]
    assert catalog.check() == []
