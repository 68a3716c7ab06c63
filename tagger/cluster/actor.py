"""The model actor: one per GPU or CPU the run is given, holding the backbone and the head
for the whole run, so that each batch pays only for its own photos."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagger.classifier.head import Head
from tagger.cluster.model_files import ModelFiles
from tagger.cluster.work import Row, prepare_unit, run_unit

if TYPE_CHECKING:
    from ray import ObjectRef

GPU = "cuda"
CPU = "cpu"


class TaggingActor:
    """Built by Ray Data on a worker; called with one unit (a batch of photos) at a time. The
    model's files come through Ray's object store, fetched once by each actor's node.

    On a CPU the actor `decodes` its units itself, one engine thread per actor and an actor per
    CPU: every core then decodes and runs the network in turn, with nothing shipped between
    them. On a GPU the units come decoded by tasks spread over the cluster's CPUs, which a
    GPU outruns many times over."""

    def __init__(
        self, model: ObjectRef[ModelFiles], head_file: ObjectRef[bytes], device: str, batch_size: int, decodes: bool
    ) -> None:
        import ray

        model_files = ray.get(model)
        self.engine = model_files.gpu_engine() if device == GPU else model_files.cpu_engine(threads=1)
        self.head = Head.from_bytes(ray.get(head_file))
        self.head.check_backbone(self.engine.backbone_id, self.engine.feature_dim)
        self.decodes = decodes
        self.batch_size = batch_size

    def __call__(self, unit: Row) -> Row:
        prepared = prepare_unit(unit, self.engine.preprocessing) if self.decodes else unit
        return run_unit(prepared, self.engine, self.head, self.batch_size)
