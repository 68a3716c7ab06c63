"""How an error raised in one of Tagger's child processes reaches the app.

Unpickling an exception imports the module of its class, and most of the modules that run in
the children import torch, which the app's process must not (its import freezes the window).
So only built-in exceptions (an OSError with its filename and strerror, say) cross as
themselves; any other crosses as the caller's stand-in class with the same message. Either
way the child's traceback travels in the exception's notes, for the log.
"""

from __future__ import annotations

import pickle
import traceback


def passable(error: BaseException, where: str, stand_in: type[Exception]) -> BaseException:
    """What to send the app for `error`, raised in the child process `where` names."""
    note = f"In {where}:\n" + "".join(traceback.format_exception(error)).rstrip()
    if type(error).__module__ == "builtins":
        error.add_note(note)
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 - any exception that does not survive the trip
            pass
        else:
            return error
    replacement = stand_in(str(error).strip() or type(error).__name__)
    replacement.add_note(note)
    return replacement
