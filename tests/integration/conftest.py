"""Fixtures of the integration tests beyond tests/conftest.py's."""

from __future__ import annotations

from tests.integration._cli import main_env

__all__ = ["main_env"]
