"""The package as a dependency: a light import, a plugin that costs nothing unused, extras that say their name.

Each check runs in a fresh interpreter (a subprocess), since this test session has long
imported everything.  ``.ci/wheel-check`` does the same against the built wheel.
"""

from __future__ import annotations

import importlib.metadata
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import smtp_fsm

HEAVY = ("asyncio", "aiosmtpd", "trustme", "graphviz", "smtp_fsm.testing.servers", "smtp_fsm.aio")


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def loaded_after(code: str) -> list[str]:
    done = run_python(textwrap.dedent(code) + f"\nimport sys\nprint([m for m in {HEAVY!r} if m in sys.modules])")
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])  # a list literal printed by the child


def test_import_smtp_fsm_loads_no_asyncio_and_no_toolkit() -> None:
    assert loaded_after("import smtp_fsm") == []
    # the engine and the blocking driver at work still need neither
    assert loaded_after("""
        import smtp_fsm
        session = smtp_fsm.ClientSession(local_hostname="client.example")
        session.receive_data(b"220 mx\\r\\n")
        assert session.data_to_send() == b"EHLO client.example\\r\\n"
        assert smtp_fsm.SMTPClient("127.0.0.1", 2525).port == 2525
    """) == []


def test_the_asyncio_driver_loads_asyncio_when_asked_for() -> None:
    assert loaded_after("import smtp_fsm; smtp_fsm.AsyncSMTPClient") == ["asyncio", "smtp_fsm.aio"]
    assert "AsyncSMTPClient" in dir(smtp_fsm) and set(smtp_fsm.__all__) <= set(dir(smtp_fsm))


def test_every_public_name_resolves_and_no_lazy_name_is_also_a_submodule() -> None:
    """A submodule imported by anyone becomes the package's attribute and would hide a lazy name of its own name."""
    from smtp_fsm import testing

    for package in (smtp_fsm, testing):
        assert all(getattr(package, name) is not None for name in package.__all__)
        submodules = {module.name for module in pkgutil.iter_modules(package.__path__)}
        assert set(package.__all__) & submodules == ({"hostile"} if package is testing else set())
    assert callable(testing.replay)


def test_submodules_are_attributes_as_after_an_eager_import() -> None:
    done = run_python("""
        import smtp_fsm
        assert smtp_fsm.session.END_OF_DATA == "end of data" and callable(smtp_fsm.transcript.to_text)
        assert smtp_fsm.testing.hostile.__name__ == "smtp_fsm.testing.hostile"
        try:
            smtp_fsm.no_such_thing
        except AttributeError:
            print("ok")
    """)
    assert done.stdout.strip() == "ok", done.stderr


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    assert loaded_after("import pytest; import smtp_fsm.testing.plugin") == []


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=project,
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_project_that_uses_no_fixture_pays_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(textwrap.dedent(f"""
        import sys

        def test_nothing_heavy_was_loaded():
            assert "smtp_fsm.testing.plugin" in sys.modules  # the plugin is loaded ...
            assert [m for m in {HEAVY!r} if m in sys.modules] == []  # ... and cost nothing
    """), encoding="utf-8")
    done = _pytest(tmp_path)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_the_plugin_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "test_fixture.py").write_text("def test_uses(smtp_server):\n    pass\n", encoding="utf-8")
    done = _pytest(tmp_path, "-p", "no:smtp_fsm")
    assert done.returncode == 1 and "fixture 'smtp_server' not found" in done.stdout, done.stdout


def test_a_fixture_whose_extra_is_missing_errors_with_the_install_line(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("import sys\nsys.modules['aiosmtpd'] = None  # not installed\n",
                                          encoding="utf-8")
    (tmp_path / "test_fixture.py").write_text("def test_uses(smtp_server):\n    pass\n", encoding="utf-8")
    done = _pytest(tmp_path)
    assert done.returncode == 1 and "1 error" in done.stdout and "skipped" not in done.stdout, done.stdout
    assert "needs aiosmtpd, which is not installed: pip install 'smtp_fsm[server]'" in done.stdout


def test_the_command_line_names_the_missing_extra_in_one_line(tmp_path: Path) -> None:
    for blocked, argv, extra in (("aiosmtpd", ["demo"], "server"),
                                 ("dns", ["send", "--from", "a@example.org", "--to", "b@example.net", "--body", "x"],
                                  "dns")):
        done = run_python(f"""
            import sys
            sys.modules[{blocked!r}] = None
            from smtp_fsm.cli import main
            sys.exit(main({argv!r}))
        """)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and f"pip install 'smtp_fsm[{extra}]'" in done.stderr, done.stderr


def test_diagrams_without_the_graphviz_package_use_the_shipped_svgs_or_say_so(tmp_path: Path) -> None:
    script = """
        import sys
        sys.modules["graphviz"] = None
        from smtp_fsm.cli import main
        sys.exit(main(["diagram", "--out", {out!r}, *{extra!r}]))
    """
    done = run_python(script.format(out=str(tmp_path / "p"), extra=[]))
    assert done.returncode == 0 and done.stderr == "", done.stderr  # today's SVGs ship in the package
    assert sorted({p.suffix for p in (tmp_path / "p").iterdir()}) == [".dot", ".mmd", ".svg"]
    done = run_python(script.format(out=str(tmp_path / "c"), extra=["--labels", "code"]))
    assert done.returncode == 2, done.stderr  # code-labelled SVGs were never shipped: say what to install
    assert sorted({p.suffix for p in (tmp_path / "c").iterdir()}) == [".dot", ".mmd"]
    assert done.stderr.count("\n") == 1 and "pip install 'smtp_fsm[diagrams]'" in done.stderr, done.stderr


def test_one_version_everywhere() -> None:
    assert importlib.metadata.version("smtp_fsm") == smtp_fsm.__version__
    done = subprocess.run([sys.executable, "-m", "smtp_fsm", "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.strip() == f"smtp-fsm {smtp_fsm.__version__}"
    changelog = (Path(__file__).resolve().parent.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {smtp_fsm.__version__}" in changelog


def test_every_public_name_and_member_has_a_docstring() -> None:
    """The API reference is built from them (docs/reference/api.rst): nothing public goes undocumented."""
    import inspect

    from smtp_fsm import mx, testing

    missing = []
    for package in (smtp_fsm, testing, mx):
        for name in package.__all__:
            obj = getattr(package, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
                missing.append(f"{package.__name__}.{name}")
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    function = value.fget if isinstance(value, property) else value
                    documented = bool((getattr(function, "__doc__", None) or "").strip())
                    if not attr.startswith("_") and inspect.isfunction(function) and not documented:
                        missing.append(f"{package.__name__}.{name}.{attr}")
    assert missing == []
