"""Fixtures of the notification tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .webhook import Webhook, serve


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serve() as hook:
        yield hook
