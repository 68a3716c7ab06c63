"""Runs the model over a library: the glue between the library, the engines and the head.

Split so both front ends share it: `plan_tagging` reads what to do (fast, on the
thread that owns the library), `run_tagging` computes (a worker thread, or inline for
the CLI) and yields events, and the owner of the library writes each batch as it
arrives with `adopt_model` and `Library.record_tag_results`. A crash loses at most the
batch in flight and the next run resumes with the photos still untagged."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from tagger.classifier.head import Head
from tagger.domain import ModelVersion, Progress, TagResult
from tagger.errors import BackboneError, HeadError, LibraryError
from tagger.inference.networks import network_title
from tagger.library.library import Library

if TYPE_CHECKING:
    from tagger.inference.engine import FeatureEngine
    from tagger.inference.pipeline import PhotoResult

ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]

# Rows of cached features scored per batch when no decoding is needed.
CACHED_BATCH = 2048


@dataclass(frozen=True)
class TaggingPlan:
    """Everything a tagging run needs, read up front so the worker never touches the writer."""

    database_path: Path
    models_dir: Path
    cache_dir: Path
    library_root: Path
    current: ModelVersion | None
    classes: tuple[str, ...]
    items: tuple[tuple[int, str], ...]
    device: str | None = None
    # Items the user labeled: the run computes their features, which training and the
    # suspects learn from, and their labels stay as they are (Library.record_tag_results).
    labeled: frozenset[int] = frozenset()
    # The stock network to tag with instead of the current model's (a library switching
    # networks); before the first model, the one asked for (None: the machine's default).
    network: str | None = None


@dataclass(frozen=True)
class ModelReady:
    """First event of a run: which model tags, and whether it is new to the library."""

    head_file: Path
    backbone_id: str
    classes: tuple[str, ...]
    engine_description: str
    needs_registration: bool
    mode: str = "zero-shot"
    note: str = ""
    remade: bool = False  # the note says why the zero-shot model had to be made again
    network_changed: bool = False  # a zero-shot model of another network: the note says which


@dataclass
class TagOutcome:
    tagged: int = 0
    from_cache: int = 0
    labeled_features: int = 0  # photos the user labeled whose features the run computed
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0  # the whole run, the model's start included
    model_ready_s: float = 0.0  # of which starting the model
    engine: str = ""
    model_version: int | None = None
    model_note: str = ""  # something about the model the user should know, e.g. that it was made again
    network_changed: bool = False  # the library now tags with another network (model_note says which)

    @property
    def rate_per_s(self) -> float:
        """Photos per second once the model was ready."""
        tagging = self.seconds - self.model_ready_s
        return (self.tagged + self.labeled_features) / tagging if tagging > 0 else 0.0

    def describe(self) -> str:
        if not self.tagged and not self.labeled_features and not self.unreadable:
            text = "nothing to tag: every photo has a tag (use --all to re-tag the model's)"
        else:
            text = f"{self.tagged} photo(s) tagged ({self.from_cache} from cached features)"
            if self.labeled_features:
                text += f", features computed for {self.labeled_features} photo(s) you labeled"
            text += (
                f" in {self.seconds:.2f} s (model ready after {self.model_ready_s:.2f} s, then "
                f"{self.rate_per_s:.1f}/s), model version {self.model_version}, {self.engine}"
            )
            if self.unreadable:
                text += f"; {len(self.unreadable)} unreadable"
        if self.model_note:
            text += f"; {self.model_note}"
        return text + (" (cancelled; run again to resume)" if self.cancelled else "")


# -- planning (thread that owns the library) -------------------------------------------


def plan_tagging(
    library: Library,
    *,
    include_tagged: bool = False,
    photo_ids: Sequence[int] | None = None,
    device: str | None = None,
    network: str | None = None,
) -> TaggingPlan:
    """What a run does: the photos the model may tag (`photo_ids` narrows them down), and the
    photos the user labeled that have no features for the current model yet.

    `network` (a stock network's name) switches the library to it unless its model runs it
    already; a model whose network's weights or input changed since is switched likewise.
    A switch tags every photo again (the user's labels stay) with a new zero-shot model of
    the new network, which keeps the class list; the model history keeps the old versions."""
    from tagger.inference.preprocessing import network_backbone_id  # OpenCV: not before the first paint

    current = library.current_model_version()
    network = network_to_switch_to(current, network)
    if current is not None and network is not None:
        include_tagged = True
        labeled = set(library.store.user_labeled_ids_without_features(network_backbone_id(network)))
    else:
        labeled = set(labeled_photos_without_features(library, current))
    ids = sorted(labeled.union(library.store.photo_ids_to_tag(include_tagged=include_tagged)))
    if photo_ids is not None:
        wanted = set(photo_ids)
        ids = [i for i in ids if i in wanted]
    paths = {p.id: p.path for p in library.store.photos(ids)}
    items = tuple((i, paths[i]) for i in ids if i in paths)
    return TaggingPlan(
        database_path=library.database_path,
        models_dir=library.models_dir,
        cache_dir=library.cache_dir,
        library_root=library.root,
        current=current,
        classes=tuple(library.class_names()),
        items=items,
        device=device,
        labeled=frozenset(i for i, _ in items if i in labeled),
        network=network,
    )


def network_to_switch_to(current: ModelVersion | None, asked: str | None) -> str | None:
    """The stock network a run must tag with instead of the current model's; None when the
    model's own serves (or, before the first model, when the machine's default is wanted)."""
    from tagger.inference.networks import NETWORKS, network_of
    from tagger.inference.preprocessing import network_backbone_id  # OpenCV: not before the first paint

    if asked is not None and asked not in NETWORKS:
        raise BackboneError(f"unknown network {asked!r}: use one of {', '.join(NETWORKS)}")
    if current is None:
        return asked
    runs = network_of(current.backbone_id)
    if asked is not None and (runs is None or runs.name != asked):
        return asked
    if runs is not None and not current.backbone_file and network_backbone_id(runs.name) != current.backbone_id:
        return runs.name  # its weights or its input changed since the model was made
    return None


def labeled_photos_without_features(library: Library, current: ModelVersion | None = None) -> list[int]:
    """The user's labeled photos that a run must decode before a model can learn from them or
    judge them: tagging leaves their labels alone, so nothing else gives them features."""
    current = current or library.current_model_version()
    return library.store.user_labeled_ids_without_features(current.backbone_id if current else None)


# -- computing (any thread) ---------------------------------------------------------------


class PhotoTagging(Protocol):
    """Who decodes and tags the photos that have no cached features: this process by default
    (`tag_here`), or workers elsewhere (tagger.cluster). Yields batches of results, any order;
    `progress(done, total)` after each; stops soon after `cancel` says so."""

    def __call__(
        self,
        items: Sequence[tuple[int, str]],
        engine: FeatureEngine,
        head: Head,
        *,
        progress: Callable[[int, int], None],
        cancel: CancelCheck | None,
    ) -> Iterator[list[PhotoResult]]: ...


def tag_here(
    items: Sequence[tuple[int, str]],
    engine: FeatureEngine,
    head: Head,
    *,
    progress: Callable[[int, int], None],
    cancel: CancelCheck | None,
) -> Iterator[list[PhotoResult]]:
    from tagger.inference.pipeline import decode_for_model, tag_photos
    from tagger.inference.shared_decoding import may_decode_jpegs, tag_photos_sharing_decode

    if may_decode_jpegs(engine):
        # The GPU engine decodes JPEGs too, once it has taken over, beside the CPU's threads.
        return tag_photos_sharing_decode(items, engine, head, progress=progress, cancel=cancel)
    return tag_photos(items, engine, head, decode_for_model(engine.preprocessing), progress=progress, cancel=cancel)


class HeadChoice(NamedTuple):
    head: Head
    file: Path
    is_new: bool  # written for this run: to be registered as a new version
    note: str = ""  # for the new version
    remade: bool = False  # in place of a zero-shot head whose file was missing or damaged
    network_changed: bool = False  # a zero-shot head of another network than the current model's


def head_for(
    plan_current: ModelVersion | None, classes: Sequence[str], engine, models_dir: Path, library_root: Path
) -> HeadChoice:
    """The head that tags: the current version's; a new one when the classes changed; a new
    zero-shot one before the first model, when the engine runs another network than the
    current model's (its features would mean nothing to that model), or in place of a
    zero-shot one whose file is missing or damaged.

    Only a zero-shot head is made again: it holds nothing learned, so a new one is the same
    model. A trained head's file is refused with HeadError, as every other loader does."""
    if plan_current is None:
        return _saved(_zero_shot_head(classes, engine), models_dir)
    if plan_current.backbone_id != engine.backbone_id:
        note = network_change_note(plan_current.backbone_id, engine.backbone_id)
        return _saved(_zero_shot_head(classes, engine), models_dir, note, network_changed=True)
    head_file = library_root / plan_current.head_file
    try:
        head = Head.load(head_file)
    except (HeadError, FileNotFoundError) as error:
        if plan_current.mode != "zero-shot":
            raise
        # Head.load names the file; the note names it once.
        reason = str(error).removeprefix(f"{head_file}: ")
        problem = "was missing" if isinstance(error, FileNotFoundError) else f"could not be used ({reason})"
        note = f"zero-shot model made again, as its file {head_file.name} {problem}"
        return _saved(_zero_shot_head(classes, engine), models_dir, note, remade=True)
    if tuple(head.classes) == tuple(classes):
        return HeadChoice(head, head_file, is_new=False)
    return _saved(head.with_classes(list(classes)), models_dir, "classes changed")


def network_change_note(old_backbone_id: str, new_backbone_id: str) -> str:
    """What a user reads when a library's model starts over on another network."""
    old, new = network_title(old_backbone_id), network_title(new_backbone_id)
    change = f"{new} now tags instead of {old}" if old != new else f"{new}'s weights or input changed"
    return (
        f"{change}: the model starts from {new}'s ImageNet classes and every photo is tagged again; "
        "your labels and the earlier versions are kept. Retrain to learn from your labels again"
    )


def _zero_shot_head(classes: Sequence[str], engine) -> Head:  # noqa: ANN001 - a FeatureEngine
    weight, bias = engine.imagenet_classifier()
    return Head.zero_shot(list(classes), weight, bias, backbone_id=engine.backbone_id)


def _saved(
    head: Head, models_dir: Path, note: str = "", *, remade: bool = False, network_changed: bool = False
) -> HeadChoice:
    """`head` written to a new model file, for a new version."""
    head_file = new_model_file(models_dir, "head")
    head.save(head_file)
    return HeadChoice(head, head_file, True, note, remade, network_changed)


def new_model_file(models_dir: Path, kind: str, suffix: str = ".safetensors") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(models_dir) / f"{kind}-{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**9}{suffix}"


def run_tagging(
    plan: TaggingPlan,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    engine=None,
    tag_photos: PhotoTagging = tag_here,
) -> Iterator[ModelReady | list[TagResult]]:
    """Yield a ModelReady, then batches of results. Reads the database, never writes it.

    An engine passed in stays open; one the run opens is closed when the run ends. The engine
    keys the cached features and gives the zero-shot head; `tag_photos` decodes and tags the
    photos without cached features with its backbone (here, unless told otherwise)."""
    if engine is not None:
        yield from _tag_with(plan, engine, progress, should_cancel, tag_photos)
        return
    from tagger.inference.choice import open_engine
    from tagger.inference.engine import close_engine

    engine = open_engine(plan.device, plan.cache_dir, plan.current, plan.library_root, plan.network)
    try:
        yield from _tag_with(plan, engine, progress, should_cancel, tag_photos)
    finally:
        close_engine(engine)


def _tag_with(
    plan: TaggingPlan,
    engine,
    progress: ProgressCallback | None,  # noqa: ANN001 - FeatureEngine
    should_cancel: CancelCheck | None,
    tag_photos: PhotoTagging,
) -> Iterator[ModelReady | list[TagResult]]:
    chosen = head_for(plan.current, plan.classes, engine, plan.models_dir, plan.library_root)
    head = chosen.head
    yield ModelReady(
        chosen.file,
        engine.backbone_id,
        tuple(head.classes),
        engine.describe(),
        chosen.is_new,
        mode="zero-shot" if plan.current is None or chosen.network_changed else plan.current.mode,
        note=chosen.note,
        remade=chosen.remade,
        network_changed=chosen.network_changed,
    )
    total = len(plan.items)
    started = time.monotonic()

    def report(done: int) -> None:
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(Progress(done, total, rate_per_s=done / elapsed if elapsed > 0.5 else None))

    with Library(plan.library_root, readonly=True) as reader:
        ids = [photo_id for photo_id, _ in plan.items]
        cached_ids, features = reader.store.features(engine.backbone_id, ids)
    done = 0
    report(0)
    # Photos seen before are scored from their cached features: no decoding at all.
    for start in range(0, len(cached_ids), CACHED_BATCH):
        if should_cancel and should_cancel():
            return
        chunk_ids = cached_ids[start : start + CACHED_BATCH]
        probabilities = head.probabilities(features[start : start + CACHED_BATCH])
        yield [TagResult(int(i), tuple(map(float, p))) for i, p in zip(chunk_ids, probabilities)]
        done += len(chunk_ids)
        report(done)
    have = set(cached_ids.tolist())
    to_decode = [(photo_id, path) for photo_id, path in plan.items if photo_id not in have]
    expect_photos = getattr(engine, "expect_photos", None)
    if expect_photos is not None:  # a GPU engine that starts only for a long run (handover_engine)
        expect_photos(len(to_decode))

    base = done
    for batch in tag_photos(to_decode, engine, head, progress=lambda n, _total: report(base + n), cancel=should_cancel):
        yield [
            TagResult(int(r.photo_id), error=_plain_reason(r.error))
            if not r.ok
            else TagResult(int(r.photo_id), tuple(map(float, r.probabilities)), r.features)
            for r in batch
        ]


def _plain_reason(error: str | None) -> str:
    # tag_photos reports "UnreadableImage: reason"; the reason alone is what users read.
    if error and ": " in error and error.split(": ", 1)[0].endswith(("UnreadableImage", "Error")):
        return error.split(": ", 1)[1]
    return error or "could not be read"


# -- writing (thread that owns the library) ------------------------------------------------


def adopt_model(library: Library, ready: ModelReady, current: ModelVersion | None) -> ModelVersion:
    """Register the run's model when it is new; otherwise the current version tags."""
    if not ready.needs_registration and current is not None:
        return current
    if ready.network_changed or current is None:
        # Nothing learned carries over to another network: a model of its own, untrained.
        return library.register_model_version(
            mode=ready.mode,
            backbone_id=ready.backbone_id,
            head_file=ready.head_file,
            classes=ready.classes,
            make_current=True,
            note=ready.note,
        )
    return library.register_model_version(
        mode=ready.mode,
        backbone_id=ready.backbone_id,
        head_file=ready.head_file,
        classes=ready.classes,
        n_labels=current.n_labels,
        metrics=current.metrics,
        make_current=True,
        note=ready.note,
        backbone_file=library.model_file(current.backbone_file) if current.backbone_file else None,
    )


def tag_library(
    library: Library,
    *,
    include_tagged: bool = False,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    photo_ids: Sequence[int] | None = None,
    engine=None,  # a FeatureEngine already open; by default the run opens the plan's
    network: str | None = None,
    tag_photos: PhotoTagging = tag_here,
) -> TagOutcome:
    """Tag inline (the CLI): the same run the GUI does in a worker."""
    plan = plan_tagging(library, include_tagged=include_tagged, photo_ids=photo_ids, device=device, network=network)
    outcome = TagOutcome()
    if not plan.items:
        return outcome
    started = time.monotonic()
    version: ModelVersion | None = None
    paths = dict(plan.items)
    events = run_tagging(plan, progress=progress, should_cancel=should_cancel, engine=engine, tag_photos=tag_photos)
    for event in events:
        if isinstance(event, ModelReady):
            outcome.model_ready_s = time.monotonic() - started
            version = adopt_model(library, event, plan.current)
            outcome.engine = event.engine_description
            outcome.model_version = version.id
            outcome.model_note = event.note if event.remade or event.network_changed else ""
            outcome.network_changed = event.network_changed
            continue
        library.record_tag_results(version, event)
        for result in event:
            if result.error is not None:
                outcome.unreadable.append((paths[result.photo_id], result.error))
            elif result.photo_id in plan.labeled:
                outcome.labeled_features += 1
            else:
                outcome.tagged += 1
                outcome.from_cache += result.features is None
    outcome.cancelled = bool(should_cancel and should_cancel())
    outcome.seconds = time.monotonic() - started
    return outcome


def extract_labeled_features(
    library: Library,
    *,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> TagOutcome:
    """Before training or judging labels: features for the labeled photos that have none.

    The same run as `tag_library`, narrowed to those photos; before any model it also makes
    the first (zero-shot) version, as a first tagging run does."""
    return tag_library(
        library,
        device=device,
        progress=progress,
        should_cancel=should_cancel,
        photo_ids=labeled_photos_without_features(library),
    )


def sync_model_classes(library: Library, renamed: dict[str, str] | None = None) -> ModelVersion | None:
    """After classes were added, renamed or removed: a model version with the new class list.

    Numpy only, so the GUI can call it on its own thread. Learned rows follow renamed classes."""
    current = library.current_model_version()
    classes = library.class_names()
    if current is None or tuple(current.classes) == tuple(classes):
        return None
    head = Head.load(library.model_file(current.head_file)).with_classes(classes, renamed=renamed)
    head_file = new_model_file(library.models_dir, "head")
    head.save(head_file)
    return library.register_model_version(
        mode=current.mode,
        backbone_id=current.backbone_id,
        head_file=head_file,
        classes=classes,
        n_labels=current.n_labels,
        metrics={},
        make_current=True,
        note="classes changed",
        backbone_file=library.model_file(current.backbone_file) if current.backbone_file else None,
    )


def retag_from_cache(library: Library) -> int:
    """Re-score every photo from cached features (no decoding) with the current model.

    All photos get the new model's probabilities, so the preview and the suspects see them;
    only those the user did not label get the new tag. Photos without cached features for
    the current backbone are left for the next tagging run."""
    version = library.current_model_version()
    if version is None:
        raise LibraryError("There is no model yet: tag some photos first")
    head = Head.load(library.model_file(version.head_file))
    ids = library.store.photo_ids_readable()
    cached_ids, features = library.store.features(version.backbone_id, ids)
    if not len(cached_ids):
        return 0
    probabilities = head.probabilities(features)
    results = [TagResult(int(i), tuple(map(float, p))) for i, p in zip(cached_ids, probabilities)]
    for start in range(0, len(results), CACHED_BATCH):
        library.record_tag_results(version, results[start : start + CACHED_BATCH])
    return len(results)
