"""Every failure Tagger raises on purpose, under one base: `TaggerError`.

str() of any of them is a message worded for the user. Three families group what callers
treat alike: `Cancelled` (the user or the app asked the work to stop; nothing was changed),
`ChildProcessFailed` (work in a child process failed, or the process died; see
tagger.common.child_process) and the rest, each named after where it is raised. Classes that
were ValueErrors, RuntimeErrors or OSErrors before they had a common base still are, so
callers that catch those keep working.

Nothing here imports anything but the standard library: a child process's error is unpickled
in the app, and must not drag torch in with it.
"""

from __future__ import annotations

import os


class TaggerError(Exception):
    """A failure Tagger knows about; str() is the reason, for the user."""


class Cancelled(TaggerError):
    """The work was asked to stop and did; nothing it would have written was written."""


class ChildProcessFailed(TaggerError, RuntimeError):
    """Work in a child process failed (the message says why) or the process died."""


# -- files and paths (tagger.common) ---------------------------------------------------------


class UnsafeFileError(TaggerError, OSError):
    """A path that is not a plain file Tagger may read or update, with the reason in words.

    An OSError, so that code which already reports "cannot read FILE: reason" reports
    this too; `strerror` is the reason ("a named pipe, not a regular file")."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(None, reason, os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class UnsafePathError(TaggerError, ValueError):
    """A destination that would escape the folder it must stay in."""


class CallCancelled(Cancelled):
    """`should_cancel` said stop; the child was terminated."""


# -- images ----------------------------------------------------------------------------------


class UnreadableImage(TaggerError):
    """A file Tagger cannot show or tag; str() is the reason, worded for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JpegError(TaggerError, ValueError):
    """Bytes Tagger will not treat as a JPEG it can safely rewrite."""


class RawPreviewError(TaggerError):
    """A camera RAW file without a preview Tagger can show; str() is the reason, for the user."""


# -- the library -----------------------------------------------------------------------------


class StoreError(TaggerError):
    """A library database that cannot be used, with a reason a person understands."""


class LibraryError(TaggerError):
    """A request the library refuses, with a message meant for the user."""


class LibraryBusyError(TaggerError):
    """Another process has the library open for writing."""


class FileSkipped(TaggerError):
    """A file the library cannot keep a row for; the reason goes to the user instead."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FileVanished(FileSkipped):
    """The file was listed but is gone by the time it is read."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "file disappeared during the import")


# -- the classifier and the network ----------------------------------------------------------


class HeadError(TaggerError, ValueError):
    """A head file that cannot be read, or an invalid class list."""


class BackboneError(TaggerError, ValueError):
    """The configured backbone is unknown, or its weights do not fit it."""


class BackboneCheckpointError(TaggerError, ValueError):
    """A backbone file that is not a Tagger fine-tuned checkpoint for this architecture."""


class AcceleratorUnavailable(TaggerError, RuntimeError):
    """No GPU after all (or none worth starting): the CPU engine keeps tagging."""


class EngineProcessError(ChildProcessFailed):
    """The engine's child process failed or died; the message says how."""


class ExportFailed(ChildProcessFailed):
    """The child process could not export the model; the message says why."""


# -- training --------------------------------------------------------------------------------


class TrainingError(TaggerError):
    """Training cannot run as asked; the message tells the user what to do about it."""


class TrainingCancelled(Cancelled):
    """The user cancelled; nothing was written and the current model is unchanged."""


class ChildTrainingError(ChildProcessFailed):
    """The child process died or failed in an unexpected way; the message says how."""


# -- explanations ----------------------------------------------------------------------------


class ExplainError(TaggerError, ValueError):
    """The photo or model cannot be explained as asked (unknown class, foreign backbone...)."""


class ExplanationFailed(ChildProcessFailed):
    """The explainer's child process died, or failed with an error of Tagger's own (its message)."""


class ProbeCancelled(Cancelled):
    """`should_cancel` said stop; nothing was changed anywhere."""


# -- what leaves the app ---------------------------------------------------------------------


class SortError(TaggerError, ValueError):
    """A sort that cannot be planned at all (bad mode, destination inside the library...)."""


class XmpError(TaggerError, ValueError):
    """Bytes that are not an XMP packet Tagger can safely edit."""


class ModelExportError(TaggerError, RuntimeError):
    """The current model cannot be rebuilt for export, with a reason for the user."""


class ModelExportFailed(ChildProcessFailed):
    """The export failed (the message says why) or its process died."""


# -- tagging on a cluster --------------------------------------------------------------------


class ClusterError(TaggerError):
    """Tagging on a cluster cannot start or went wrong there (Ray missing or unreachable, a
    worker that cannot build the model); the message says what to do."""


# -- the front ends --------------------------------------------------------------------------


class CommandError(TaggerError):
    """A failure the user can act on; printed without a traceback."""


class ClassChangeRefused(TaggerError):
    """The change was not made; the message says why, in words for the user."""


class CallAbandoned(TaggerError):
    """The worker stopped waiting (its job was cancelled); the GUI thread will not run the call."""
