"""Work in a spawned child process: the one mechanism behind every child Tagger starts.

Whatever imports torch (Deep retraining, the GPU engine, heatmaps and probes, the exports)
runs in a child: in the app's process the import holds Python's interpreter lock long enough
to freeze the window, whichever thread does it (tagger.explain.process has the measurement).

- **Spawn, never fork**: the app has threads (Qt's among them) that a fork would copy mid-flight.
- **One duplex pipe**, carrying `(kind, payload)` messages (and raw bytes where a specialisation
  wants them). The app asks with "cancel" (stop the work in hand) and "stop" (end); the child
  answers with notes such as "progress", then one final message: "result", "cancelled" or
  "error" (an exception, raised in the app as it is). A child that ends without a final
  message reads as "died", with its exit code.
- **Cancel** either asks the child, which stops between two steps of its own, or terminates it
  (work that writes nothing half-usable).
- **Stop**: "stop", then `STOP_GRACE_S` to end by itself, then terminate.
- **The app's death**: the child sees the end of its pipe (`Parent.cancel_requested`, or a
  failed receive) and ends; children still running when the app's interpreter exits are
  stopped as above, before multiprocessing would wait for them.
- **Errors across the boundary**: unpickling an exception imports the module of its class, and
  the modules that run in children mostly import torch. So an arbitrary error crosses through
  `passable`: built-in exceptions (an OSError with its filename, say) as themselves, any other
  as the caller's stand-in class with the same message; either way with the child's traceback
  in its notes, for the log. Tagger's own exceptions (tagger.errors) import nothing and may be
  sent as they are.

`ChildProcess` is the app's side; `Parent` is the child's. `call_in_child` runs one function to
its end; the GPU engine (tagger.inference.gpu_process), the explainer (tagger.explain.process)
and Deep training (tagger.training.process) build on the same two classes.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.util  # registers multiprocessing's exit handler before this module's (below)
import pickle
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tagger.common.cancellation import CancelCheck, is_cancelled
from tagger.errors import CallCancelled

# After "stop" (or a cancel), how long a child gets to end by itself before it is terminated.
STOP_GRACE_S = 5.0
# How often a waiting app looks at its cancel flag and at whether the child still lives.
POLL_S = 0.1

Note = Callable[[Any], None]

_log = logging.getLogger(__name__)


class ChildProcess:
    """A spawned child running `target(parent, *args)`, and the app's end of the pipe to it.

    `target` must be importable by name (a module-level function): the child imports it afresh.
    `daemon=False` lets the child start processes of its own (DataLoader workers); it is still
    stopped when the app's interpreter exits, and ends by itself when the app is killed, as long
    as it looks at `Parent.cancel_requested`.
    """

    def __init__(self, target: Callable[..., Any], *args: Any, name: str, daemon: bool = True) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_child_main, args=(target, child_end, args), name=name, daemon=daemon)
        self._stop_lock = threading.Lock()
        self._stopped = False
        # Threads reading the pipe now: it is closed when the last of them is done, never under one.
        self._pipe_lock = threading.Lock()
        self._readers = 0
        self._process.start()
        child_end.close()  # so that the child's death reads as the end of the pipe here
        with _running_lock:
            _running.add(self)

    @property
    def name(self) -> str:
        return self._process.name

    @property
    def daemon(self) -> bool:
        return self._process.daemon

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def is_alive(self) -> bool:
        return self._process.is_alive()

    # -- the pipe ------------------------------------------------------------------------------

    def send(self, kind: str, payload: object = None) -> None:
        self._connection.send((kind, payload))

    def send_bytes(self, data: Any) -> None:
        self._connection.send_bytes(data)

    def recv(self) -> tuple[str, Any]:
        """The next message; EOFError or OSError when the child has gone."""
        with self._reading():
            return self._connection.recv()

    def recv_bytes(self) -> bytes:
        with self._reading():
            return self._connection.recv_bytes()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        with self._pipe_lock:
            self._readers += 1
        try:
            yield
        finally:
            with self._pipe_lock:
                self._readers -= 1
                if self._stopped and not self._readers:
                    self._connection.close()

    def receive(
        self,
        should_cancel: CancelCheck | None = None,
        *,
        on_cancel: str = "ask",
        notes: Mapping[str, Note] | None = None,
        poll_s: float = POLL_S,
    ) -> tuple[str, Any]:
        """Wait for the child's next final message: (kind, payload).

        Notes ("progress" and any kind in `notes`) go to their handlers on the way. When
        `should_cancel` says so, the child is sent "cancel" once (`on_cancel="ask"`), or is
        terminated and ("cancelled", None) returned (`on_cancel="terminate"`). A child that ends
        without a final message gives ("died", its exit code)."""
        with self._reading():
            return self._receive(should_cancel, on_cancel, notes or {}, poll_s)

    def _receive(
        self, should_cancel: CancelCheck | None, on_cancel: str, notes: Mapping[str, Note], poll_s: float
    ) -> tuple[str, Any]:
        cancel_sent = False
        while True:
            # Asked before every wait, not only when a wait times out: steps can follow each
            # other faster than the wait.
            if not cancel_sent and is_cancelled(should_cancel):
                if on_cancel == "terminate":
                    self.stop(ask=False, grace_s=0.0)
                    return "cancelled", None
                with contextlib.suppress(OSError):  # gone: the next receive says so
                    self.send("cancel")
                cancel_sent = True
            try:
                if not self._connection.poll(poll_s):
                    if not self._process.is_alive() and not self._connection.poll():
                        # Its own children (DataLoader workers) may hold the pipe open: the
                        # process itself is what is asked about.
                        self._process.join()
                        return "died", self._process.exitcode
                    continue
                kind, payload = self._connection.recv()
            except (EOFError, OSError):
                self._process.join(STOP_GRACE_S)
                return "died", self._process.exitcode
            handler = notes.get(kind)
            if handler is not None:
                handler(payload)
            elif kind != "progress":
                return kind, payload

    # -- the end ---------------------------------------------------------------------------------

    def stop(self, *, ask: bool = True, grace_s: float = STOP_GRACE_S) -> None:
        """End the child: "stop" if `ask`, `grace_s` to end by itself, then terminate; the pipe
        closes once no thread reads it. Safe to call twice, and from another thread while one
        waits in `receive` (which then gives "died", or what the child said before it ended)."""
        with self._stop_lock:
            if self._stopped:
                return
            if ask:
                with contextlib.suppress(OSError):  # already gone
                    self.send("stop")
            with self._pipe_lock:
                self._stopped = True
                if not self._readers:
                    self._connection.close()
            self._process.join(grace_s)
            if self._process.is_alive():
                if ask:
                    _log.warning("the process %s did not stop by itself; terminating it", self.name)
                self._process.terminate()
                self._process.join(STOP_GRACE_S)
            with _running_lock:
                _running.discard(self)


class Parent:
    """The child's side of the pipe, handed to its target as the first argument."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        # The app asked the child to end, or has gone (exited, or was killed).
        self.stopping = False
        self._cancelled = False  # the work in hand was cancelled; until the next request

    def send(self, kind: str, payload: object = None) -> bool:
        """Tell the app; False when it is no longer listening."""
        try:
            self._connection.send((kind, payload))
        except OSError:
            return False
        return True

    def send_bytes(self, data: Any) -> bool:
        try:
            self._connection.send_bytes(data)
        except OSError:
            return False
        return True

    def recv(self) -> tuple[str, Any]:
        """The app's next message (a new request: the last one's cancel no longer holds);
        ("stop", None) once the app has gone."""
        self._cancelled = False
        if self.stopping:
            return "stop", None
        try:
            return self._connection.recv()
        except (EOFError, OSError):
            self.stopping = True
            return "stop", None

    def recv_bytes(self) -> bytes | None:
        try:
            return self._connection.recv_bytes()
        except (EOFError, OSError):
            self.stopping = True
            return None

    def cancel_requested(self) -> bool:
        """Whether the work in hand should stop: the app said "cancel" or "stop", or has gone.
        Never blocks; for the work to ask between its steps. Once true, it stays true."""
        if self.stopping or self._cancelled:
            return True
        try:
            if not self._connection.poll():
                return False
            kind, _ = self._connection.recv()
        except (EOFError, OSError):
            self.stopping = True
            return True
        # "cancel" or "stop": nothing else comes while work is in hand.
        self.stopping = kind == "stop"
        self._cancelled = True
        return True


def _child_main(target: Callable[..., Any], connection: Any, args: tuple) -> None:
    target(Parent(connection), *args)


# -- one function, run to its end ---------------------------------------------------------------


def call_in_child(
    function: Callable[..., Any],
    *args: Any,
    name: str,
    doing: str,
    failure: type[Exception],
    should_cancel: CancelCheck | None = None,
) -> Any:
    """`function(*args)` in a fresh interpreter. `function` must be importable (module level).

    Raises what `passable` makes of the child's error, `failure` ("`doing` stopped...") when
    the child dies without a word, and CallCancelled (the child is terminated: the work must
    leave nothing half-usable behind)."""
    child = ChildProcess(_call, function, args, name, failure, name=name)
    try:
        kind, payload = child.receive(should_cancel, on_cancel="terminate")
    except BaseException:
        child.stop(ask=False, grace_s=0.0)  # this thread was interrupted: the work is not wanted
        raise
    child.stop(ask=False)  # it has answered (or died), and ends by itself
    if kind == "cancelled":
        raise CallCancelled
    if kind == "died":
        raise failure(f"{doing} stopped: its process ended with exit code {payload}")
    if kind == "error":
        raise payload
    return payload


def _call(parent: Parent, function: Callable[..., Any], args: tuple, name: str, failure: type[Exception]) -> None:
    try:
        reply: tuple[str, object] = ("result", function(*args))
    except Exception as error:  # noqa: BLE001 - whatever it was, the app hears why
        reply = ("error", passable(error, f"the process {name}", failure))
    parent.send(*reply)


# -- errors ------------------------------------------------------------------------------------


def passable(error: BaseException, where: str, stand_in: type[Exception]) -> BaseException:
    """What to send the app for `error`, raised in the child process `where` names: the error
    itself if it is a built-in one that pickles, else `stand_in` with its message."""
    if type(error).__module__ == "builtins":
        error.add_note(_child_traceback(error, where))
        if _survives_the_trip(error):
            return error
    return standing_in(error, where, stand_in, str(error).strip() or type(error).__name__)


def standing_in(error: BaseException, where: str, stand_in: type[Exception], message: str) -> Exception:
    """`stand_in(message)` for `error`, with the child's traceback in its notes."""
    replacement = stand_in(message)
    replacement.add_note(_child_traceback(error, where))
    return replacement


def _child_traceback(error: BaseException, where: str) -> str:
    return f"In {where}:\n" + "".join(traceback.format_exception(error)).rstrip()


def _survives_the_trip(error: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any exception that does not survive it
        return False
    return True


# -- the app's exit ------------------------------------------------------------------------------

_running: set[ChildProcess] = set()
_running_lock = threading.Lock()


def _stop_children_at_exit() -> None:
    # Daemonic children are terminated, as multiprocessing would; the others would be waited
    # for, however long their work: they are asked to stop, then terminated after the grace.
    with _running_lock:
        children = list(_running)
    for child in children:
        if child.daemon:
            child.stop(ask=False, grace_s=0.0)
        else:
            child.stop()


# Registered after multiprocessing's own exit handler, so it runs first (atexit is LIFO).
atexit.register(_stop_children_at_exit)
