"""The Ray Data pipeline of a cluster run: the photos go out in batches, the workers decode
them and run the model, and the results come back here batch by batch, for the library's one
writer to store as they arrive (the run is the runner's, tagger.tagging.runner; this is who
tags the photos it cannot score from cached features).

Only paths travel: the photos must be on storage every worker sees at the same path. A photo a
worker cannot open is reported with that worker's reason and left untagged; nothing about it
is stored, since another machine may read it well."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from tagger.classifier.head import Head
from tagger.cluster.actor import CPU, GPU, TaggingActor
from tagger.cluster.connection import ClusterResources, import_ray
from tagger.cluster.model_files import ModelFiles
from tagger.cluster.work import Unreachable, prepare_unit, read_results, work_units
from tagger.common.cancellation import CancelCheck, is_cancelled
from tagger.errors import ClusterError
from tagger.inference.engine import TORCH_BATCH_SIZES, FeatureEngine
from tagger.inference.pipeline import DEFAULT_FIRST_BATCH_SIZE, PhotoResult, run_batch_sizes

if TYPE_CHECKING:
    from ray.data import Dataset

# Ray Data's own cost per block (a task, its objects in the store, their bookkeeping) is that of
# decoding several photos: blocks of this many photos keep it small, while each is still a
# second or two of a worker's time, so results come back often and a cancel loses little
# (docs/PERFORMANCE.md, "Tagging on Ray").
PHOTOS_PER_BLOCK = 64


class ClusterTagging:
    """Tags photos on the cluster Ray is connected to (tagger.cluster.connection), with the
    model in `model` and whichever head the run gives; callable as the runner's PhotoTagging.

    `device` "cpu" or "cuda" (default: GPUs when the cluster has any); `workers` model actors
    (default: one per GPU, or one per CPU). `decode_in_tasks`: photos decoded by Ray tasks
    apart from the model actors (the default on GPUs), else by the actors themselves."""

    def __init__(
        self,
        resources: ClusterResources,
        model: ModelFiles,
        *,
        device: str | None = None,
        workers: int | None = None,
        decode_in_tasks: bool | None = None,
    ) -> None:
        self.device = worker_device(resources, device)
        offered = resources.gpus if self.device == GPU else resources.cpus
        if offered < 1:
            raise ClusterError(f"the Ray cluster ({resources.describe()}) has no {self.device.upper()} to tag on")
        if workers is not None and not 1 <= workers <= offered:
            # Ray would wait for ever for actors it has no room for.
            raise ClusterError(f"--workers must be 1 to {offered}: the cluster has {offered} {self.device.upper()}(s)")
        self.resources = resources
        self.model = model
        self.workers = workers or offered
        self.decode_in_tasks = self.device == GPU if decode_in_tasks is None else decode_in_tasks
        self.unreachable: list[Unreachable] = []

    def describe(self, engine: FeatureEngine) -> str:
        runs = "PyTorch on GPU" if self.device == GPU else engine.describe()
        return f"Ray Data, {self.workers} {self.device.upper()} worker(s) on {self.resources.describe()}: {runs}"

    def __call__(
        self,
        items: Sequence[tuple[int, str]],
        engine: FeatureEngine,
        head: Head,
        *,
        progress: Callable[[int, int], None],
        cancel: CancelCheck | None,
    ) -> Iterator[list[PhotoResult]]:
        batch_size, first_batch_size = run_batch_sizes(
            engine, head, TORCH_BATCH_SIZES[GPU] if self.device == GPU else None, DEFAULT_FIRST_BATCH_SIZE
        )
        progress(0, len(items))
        if not items:
            return
        ray = import_ray()
        units = work_units(items, batch_size, first_batch_size)
        tagged = iter(self._dataset(ray, units, engine, head, batch_size).iter_rows())  # a generator
        done = 0
        try:
            for row in tagged:
                results, unreachable = read_results(row)
                self.unreachable += unreachable
                if results:
                    yield results
                done += len(row["photo_ids"])
                progress(done, len(items))
                if is_cancelled(cancel):
                    return
        except ray.exceptions.RayError as error:
            raise ClusterError(f"the run on the cluster failed: {_last_line(error)}") from error
        finally:
            # Stops the pipeline: the batches in flight are dropped, and the next run does them.
            tagged.close()

    def _dataset(
        self, ray: ModuleType, units: list[dict], engine: FeatureEngine, head: Head, batch_size: int
    ) -> Dataset:
        _quiet_ray_data(ray)
        blocks = self._blocks(len(units), batch_size)
        dataset = ray.data.from_items(units, override_num_blocks=blocks)
        if self.decode_in_tasks:
            dataset = dataset.map(prepare_unit, fn_kwargs={"preprocessing": engine.preprocessing}, num_cpus=1)
        return dataset.map(
            TaggingActor,
            fn_constructor_kwargs={
                "model": ray.put(self.model),
                "head_file": ray.put(head.to_bytes()),
                "device": self.device,
                "batch_size": batch_size,
                "decodes": not self.decode_in_tasks,
            },
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, blocks)),
            **({"num_gpus": 1} if self.device == GPU else {"num_cpus": 1}),
        )

    def _blocks(self, units: int, batch_size: int) -> int:
        """Blocks of up to PHOTOS_PER_BLOCK photos, and no fewer than workers when the run is short."""
        most = max(1, PHOTOS_PER_BLOCK // batch_size)
        per_block = min(most, max(1, math.ceil(units / self.workers)))
        return math.ceil(units / per_block)


def worker_device(resources: ClusterResources, asked: str | None) -> str:
    """What the model actors run on: `asked`, else GPUs when the cluster has any."""
    if asked not in (None, CPU, GPU):
        raise ClusterError(f"workers can tag on {CPU!r} or {GPU!r}, not {asked!r}")
    return asked or (GPU if resources.gpus else CPU)


def _last_line(error: Exception) -> str:
    # Ray's message carries the worker's whole traceback, whose last line says what went wrong
    # ("tagger.errors.HeadError: ..."); the rest is in Ray's logs.
    lines = str(error).strip().splitlines()
    return f"{lines[-1]} (details in Ray's logs)" if lines else type(error).__name__


def _quiet_ray_data(ray: ModuleType) -> None:
    # The command draws its own progress; Ray Data's bars, its notes and its remark that the
    # bars are off would only interleave with it. Its warnings stay.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
