"""One function run to its end in a spawned child process, its result or its error sent back.

For work that imports torch (an export, say), which must not happen in the app's process:
there the import holds Python's interpreter lock long enough to freeze the window, whichever
thread does it (tagger.explain_process has the measurement).

Unpickling an exception imports the module of its class, and most modules that run in the
children import torch. So only built-in exceptions (an OSError with its filename and
strerror, say) cross as themselves; any other crosses as the caller's stand-in class with the
same message. Either way the child's traceback travels in the exception's notes, for the log.
"""

from __future__ import annotations

import multiprocessing
import pickle
import traceback
from collections.abc import Callable
from typing import Any

from tagger.cancellation import CancelCheck, is_cancelled

_POLL_S = 0.1


class CallCancelled(Exception):
    """`should_cancel` said stop; the child was terminated."""


def call_in_child(function: Callable[..., Any], *args: Any, name: str, doing: str,
                  failure: type[Exception], should_cancel: CancelCheck | None = None) -> Any:
    """`function(*args)` in a fresh interpreter. `function` must be importable (module level).

    Raises what `passable` makes of the child's error, `failure` ("`doing` stopped...") when
    the child dies without a word, and CallCancelled."""
    # spawn, never fork: the app has threads (Qt's among them) that a fork would copy mid-flight.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_call, args=(function, args, sender, name, failure), name=name, daemon=True)
    child.start()
    sender.close()  # so that the child's death reads as the end of the pipe here
    try:
        while not receiver.poll(_POLL_S):
            if is_cancelled(should_cancel):
                raise CallCancelled
        kind, payload = receiver.recv()
    except EOFError:
        kind, payload = "died", None
    except BaseException:
        child.terminate()  # cancelled, or this thread was interrupted: the work is not wanted
        raise
    finally:
        receiver.close()
        child.join()
    if kind == "died":
        raise failure(f"{doing} stopped: its process ended with exit code {child.exitcode}")
    if kind == "error":
        raise payload
    return payload


def _call(function: Callable[..., Any], args: tuple, sender: Any, name: str, failure: type[Exception]) -> None:
    try:
        reply: tuple[str, object] = ("done", function(*args))
    except Exception as error:  # noqa: BLE001 - whatever it was, the app hears why
        reply = ("error", passable(error, f"the process {name}", failure))
    sender.send(reply)


def passable(error: BaseException, where: str, stand_in: type[Exception]) -> BaseException:
    """What to send the app for `error`, raised in the child process `where` names."""
    note = f"In {where}:\n" + "".join(traceback.format_exception(error)).rstrip()
    if type(error).__module__ == "builtins":
        error.add_note(note)
        if _survives_the_trip(error):
            return error
    replacement = stand_in(str(error).strip() or type(error).__name__)
    replacement.add_note(note)
    return replacement


def _survives_the_trip(error: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any exception that does not survive it
        return False
    return True
