"""``python -m smtp_fsm``: the same command line as ``smtp-fsm``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
