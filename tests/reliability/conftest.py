"""Fixtures of the reliability suite; the database fixtures come from tests/conftest.py."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _children_can_be_interrupted() -> Iterator[None]:
    """A shell without job control starts background jobs with SIGINT ignored, and a child
    inherits that; a handled SIGINT is reset to the default in the child, so Ctrl-C tests
    test vezamig, not how the suite was launched."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        yield
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        yield


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """An empty migration tree (``up/`` and ``down/``) for one test."""
    base = tmp_path / "sql"
    (base / "up").mkdir(parents=True)
    (base / "down").mkdir()
    return base
