"""The fault-injection report: each test records what it tried; RELIABILITY_REPORT=FILE saves it as JSON."""

import json
import os

import pytest

_REPORT: dict = {}


@pytest.fixture(scope="session")
def report():
    """A dict tests add their counts to (case -> numbers), written at the end of the session."""
    return _REPORT


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("RELIABILITY_REPORT")
    if path and _REPORT:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_REPORT, f, indent=1, sort_keys=True)
