"""The distributed tier's cluster (`cluster.py`): a coordinator and two workers beside the
harness's source cluster. Run by scripts/test.sh once, after the end-to-end tier (not at the
three clocks): pytest distributed."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import harness  # noqa: E402
import cluster  # noqa: E402


@pytest.fixture(scope="session")
def citus():
    env = harness.start()
    nodes = []
    try:
        cenv, nodes = cluster.start(env)
        yield cenv
    finally:
        if os.environ.get("WH_KEEP_CLUSTERS") != "1":
            cluster.stop(nodes)
            harness.stop()
