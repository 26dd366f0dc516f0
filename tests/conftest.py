"""Shared test helpers.  Fixtures with real servers come from the smtp_fsm pytest plugin."""

from __future__ import annotations

import os
import shutil

import pytest

# pytester runs test files of a made-up user project, to see the plugin's reports as its users do.
pytest_plugins = ("pytester",)

#: .ci/run sets this: in CI a missing tool is a failure, never a silent skip.
REQUIRE_TOOLS = os.environ.get("SMTP_FSM_REQUIRE_TOOLS") == "1"


def require_tool(name: str, hint: str = "") -> str:
    """Path of the executable ``name``; skip locally when missing, fail in CI."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        message = f"{name} is not installed{': ' + hint if hint else ''}"
        if REQUIRE_TOOLS:
            pytest.fail(f"{message} (SMTP_FSM_REQUIRE_TOOLS=1: .ci/run should have installed it)")
        pytest.skip(message)
    return path
