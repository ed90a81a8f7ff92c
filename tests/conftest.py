"""pytest fixtures: one pair of real clusters (tests/harness.py) for the whole session."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


@pytest.fixture(scope="session")
def env():
    e = harness.start()
    try:
        yield e
    finally:
        if os.environ.get("WH_KEEP_CLUSTERS") != "1":
            harness.stop()
