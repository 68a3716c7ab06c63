"""The torch model that explanations (heatmaps, the robustness probe) run, kept between jobs.

Loading a version's backbone and head takes seconds (torch itself, then the weights), so
the first explanation loads it and every later one, for any photo, reuses it until another
version is asked for. Only workers call `for_version`: it imports torch. The lock covers
two jobs asking at once (a heatmap and a probe), so the model is never loaded twice.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tagger.domain import ModelVersion


class ExplainModels:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version_id: int | None = None
        self._model: tuple[Any, Any] | None = None  # (FeatureBackbone, Head)
        self.loads = 0  # how many times a model was loaded: tests check it is once per version

    def for_version(self, library_root: Path, version: ModelVersion) -> tuple[Any, Any]:
        """(backbone, head) of `version`; call from a worker thread only."""
        with self._lock:
            if self._model is None or self._version_id != version.id:
                from tagger.explain import model_for_version  # torch: worker only

                self._model = model_for_version(library_root, version)
                self._version_id = version.id
                self.loads += 1
            return self._model
