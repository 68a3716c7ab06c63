"""The one mechanism for work in a child process (tagger.common.child_process), on its own.

The engines, the explainer, Deep training and the exports are tested through it elsewhere;
here are its promises with nothing else in the way: results and errors come back, a cancel
is asked or enforced, and a child that dies without a word says how it ended."""

from __future__ import annotations

import os
import time

import pytest

from tagger.common.child_process import ChildProcess, Parent, call_in_child
from tagger.errors import CallCancelled, ChildProcessFailed, HeadError, TaggerError


def _pid_and_double(value: int) -> tuple[int, int]:
    return os.getpid(), 2 * value


def _fail(kind: str) -> None:
    if kind == "builtin":
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/photo.jpg")
    raise HeadError("a head for another network")


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _exit_without_a_word() -> None:
    os._exit(3)


def _count_until_cancelled(parent: Parent) -> None:
    steps = 0
    while not parent.cancel_requested():
        parent.send("progress", steps)
        steps += 1
        time.sleep(0.01)
    assert parent.cancel_requested(), "a cancel holds until the work ends"
    parent.send("cancelled", steps)


def test_a_function_runs_in_another_process_and_its_result_comes_back() -> None:
    pid, doubled = call_in_child(_pid_and_double, 21, name="tagger-test", doing="doubling", failure=ChildProcessFailed)
    assert (pid != os.getpid(), doubled) == (True, 42)


def test_built_in_errors_cross_as_themselves_and_taggers_as_the_stand_in() -> None:
    with pytest.raises(FileNotFoundError) as raised:
        call_in_child(_fail, "builtin", name="tagger-test", doing="failing", failure=ChildProcessFailed)
    assert raised.value.filename == "/nowhere/photo.jpg"

    with pytest.raises(ChildProcessFailed) as stood_in:
        call_in_child(_fail, "tagger", name="tagger-test", doing="failing", failure=ChildProcessFailed)
    assert str(stood_in.value) == "a head for another network" and isinstance(stood_in.value, TaggerError)
    assert any("In the process tagger-test" in note and "HeadError" in note for note in stood_in.value.__notes__)


def test_a_cancelled_call_ends_its_child_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(CallCancelled):
        call_in_child(
            _sleep,
            60,
            name="tagger-test",
            doing="sleeping",
            failure=ChildProcessFailed,
            should_cancel=lambda: time.monotonic() - started > 0.5,
        )
    assert time.monotonic() - started < 30


def test_a_child_that_ends_without_a_word_says_how_it_ended() -> None:
    with pytest.raises(ChildProcessFailed, match="exiting stopped: its process ended with exit code 3"):
        call_in_child(_exit_without_a_word, name="tagger-test", doing="exiting", failure=ChildProcessFailed)


def test_a_child_asked_to_cancel_stops_between_its_steps_and_says_so() -> None:
    child = ChildProcess(_count_until_cancelled, name="tagger-test")
    seen: list[int] = []
    try:
        kind, steps = child.receive(lambda: len(seen) >= 3, notes={"progress": seen.append})
    finally:
        child.stop()
    assert kind == "cancelled" and steps >= 3 and seen[:3] == [0, 1, 2]
    assert not child.is_alive()
