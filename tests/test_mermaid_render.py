"""The Mermaid files are rendered by Mermaid itself (the npm package, pinned in tests/mermaid/) in
headless Chromium, from local files only: a grammar check is not enough."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REQUIRE_TOOLS, headless_chromium

ROOT = Path(__file__).resolve().parent.parent
MERMAID_JS = ROOT / "tests" / "mermaid" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
MMD_FILES = sorted((ROOT / "diagrams").glob("*.mmd"))


def _mermaid_js() -> Path:
    if not MERMAID_JS.exists():
        message = "Mermaid is not installed: npm ci --prefix tests/mermaid"
        if REQUIRE_TOOLS:
            pytest.fail(f"{message} (SMTP_FSM_REQUIRE_TOOLS=1: .ci/run should have run it)")
        pytest.skip(message)
    return MERMAID_JS


def test_the_pinned_mermaid_is_the_one_the_lockfile_names() -> None:
    lock = json.loads((ROOT / "tests" / "mermaid" / "package-lock.json").read_text(encoding="utf-8"))
    wanted = json.loads((ROOT / "tests" / "mermaid" / "package.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/mermaid"]["version"] == wanted["dependencies"]["mermaid"]


def test_every_mermaid_file_renders_in_mermaid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _mermaid_js()
    assert MMD_FILES, "diagrams/*.mmd are missing: make diagrams"
    page = tmp_path / "render.html"
    # Only local files: the page loads Mermaid from node_modules by a file URL, nothing from the network.
    page.write_text(f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="{script.as_uri()}"></script></head><body><div id="out"></div></body></html>""", encoding="utf-8")
    driver = headless_chromium(tmp_path / "profile", monkeypatch, "--allow-file-access-from-files")
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        driver.get(page.as_uri())
        assert driver.execute_script("return typeof mermaid") == "object", "mermaid.min.js did not load"
        driver.execute_script("mermaid.initialize({startOnLoad: false, securityLevel: 'strict'})")
        for number, path in enumerate(MMD_FILES):
            source = path.read_text(encoding="utf-8")
            result = driver.execute_async_script(
                """const [id, text, done] = arguments;
                   mermaid.render(id, text).then(r => done({svg: r.svg}),
                                                 e => done({error: String(e && e.message || e)}));""",
                f"diagram{number}", source)
            assert "error" not in result, f"{path.name}: Mermaid refused it: {result['error']}"
            svg = result["svg"]
            declared = re.findall(r'^\s*state "[^"]*" as (\S+)$', source, re.M)
            drawn = set(re.findall(r'id="[^"]*state-([A-Za-z0-9_]+)-\d+"', svg))
            missing = [name for name in declared if name not in drawn]
            assert not missing, f"{path.name}: Mermaid drew no node for {missing}"
            # (Mermaid draws a self-loop through helper nodes: count the edges between two states.)
            pairs = {pair for pair in re.findall(r"^\s*(\S+) --> (\S+)", source, re.M) if pair[0] != pair[1]}
            drawn_edges = len(re.findall(r'<path[^>]*class="[^"]*\btransition\b', svg))
            assert drawn_edges >= len(pairs), f"{path.name}: {drawn_edges} edges drawn for {len(pairs)} pairs"
    finally:
        driver.quit()
