"""The long fuzz run (not part of CI): ``python -m tests.fuzz [EXAMPLES]`` (or ``make fuzz``).

Runs the robustness properties of tests/test_properties.py with many more
examples than the test suite does, and prints how many examples each ran.
Not collected by pytest (the file name does not start with ``test_``).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import test_properties as props

DEFAULT_EXAMPLES = 5000


def _inner(test: Any) -> Callable[..., None]:
    inner: Callable[..., None] = test.hypothesis.inner_test
    return inner


def _counted(function: Callable[..., None], counter: list[int]) -> Callable[..., None]:
    @functools.wraps(function)  # hypothesis reads the argument names through __wrapped__
    def run(*args: Any, **kwargs: Any) -> None:
        counter[0] += 1
        function(*args, **kwargs)

    return run


PROPERTIES: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
    ("random walk through the machine", _inner(props.test_random_walk_through_the_machine),
     (props.configs, st.lists(props.work_item, min_size=1, max_size=3), st.data())),
    ("random servers, blind", _inner(props.test_random_servers_never_break_the_engine),
     (props.configs, st.lists(props.work_item, max_size=3), st.lists(props.operation, max_size=25))),
    ("reply parser", _inner(props.test_reply_parser_is_bounded_and_raises_only_protocol_errors),
     (st.lists(st.one_of(props.server_reply, st.binary(max_size=3000)), max_size=6),
      st.lists(st.integers(0, 5000), max_size=8))),
    ("fragmenting each reply", _inner(props.test_fragmenting_each_reply_changes_nothing),
     (st.sampled_from(sorted(props.GOOD_STREAMS)), st.lists(st.lists(st.integers(0, 200), max_size=6), max_size=5))),
    ("cutting each round trip anywhere", _inner(props.test_cutting_each_round_trip_anywhere_changes_nothing),
     (st.sampled_from(sorted(props.GOOD_STREAMS)), st.lists(st.lists(st.integers(0, 2000), max_size=12),
                                                            max_size=2))),
]


def main(argv: list[str]) -> int:
    examples = int(argv[0]) if argv else DEFAULT_EXAMPLES
    failed = 0
    for name, function, strategies in PROPERTIES:
        counter = [0]
        test = settings(max_examples=examples, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))(given(*strategies)(_counted(function, counter)))
        started = time.monotonic()
        try:
            test()
            outcome = "ok"
        except Exception as exc:  # report every property, then fail
            failed += 1
            outcome = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"{name}: {counter[0]} examples in {time.monotonic() - started:.1f} s: {outcome}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
