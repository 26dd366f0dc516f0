"""The optional extras: what each brings, and the one line that says which to install.

``pip install smtp_fsm`` brings ``transitions`` only: the engine, both drivers and
the command line's ``send`` need nothing more.  A feature whose extra is missing
raises ``MissingExtra`` (an ``ImportError`` and an ``SMTPError``) naming the
extra, the moment it is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import SMTPError

#: extra -> the distributions it brings and what they are for (pyproject.toml says the same).
EXTRAS = {
    "diagrams": ("graphviz", "SVG diagrams (with Graphviz's dot program)"),
    "server": ("aiosmtpd, trustme", "smtp-fsm demo and serve, and the testing toolkit's local servers"),
    "testing": ("smtp_fsm[server], pytest", "the pytest plugin's fixtures"),
    "dns": ("dnspython", "direct delivery to the recipients' MX hosts (smtp_fsm.mx)"),
}


class MissingExtra(SMTPError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""


class GraphvizMissing(RuntimeError):
    """Graphviz's ``dot`` program is not installed, so no SVG can be rendered (smtp_fsm.diagram raises it;
    it lives here so that the command line can catch it without loading the diagrams)."""


def missing(feature: str, module: str, extra: str) -> MissingExtra:
    return MissingExtra(f"{feature} needs {module}, which is not installed: pip install 'smtp_fsm[{extra}]'")


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise ``MissingExtra`` saying which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(feature, module, extra) from None
