"""Shared test helpers.  Fixtures with real servers come from the smtp_fsm pytest plugin."""

from __future__ import annotations

import os
import shutil
from typing import Any

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


def headless_chromium(profile: os.PathLike[str], monkeypatch: pytest.MonkeyPatch, *arguments: str) -> Any:
    """A Selenium driver for Debian's Chromium, headless and offline (no Selenium Manager download, none of
    Chromium's background traffic); the caller quits it.  Skips locally, fails in CI, without the tools."""
    chromium = require_tool("chromium", "Debian package chromium")
    chromedriver = require_tool("chromedriver", "Debian package chromium-driver")
    from selenium import webdriver

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={os.fspath(profile)}", *arguments):
        options.add_argument(argument)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=options)
