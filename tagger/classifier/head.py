"""The classifier on top of the backbone's features: a zero-shot prior plus what was learned.

numpy only, so that tagging with a saved head never needs torch.

For features f (one row per photo, D = 1280 for EfficientNet-Lite0) the head computes

    imagenet = f @ imagenet_weight.T + imagenet_bias             # [N, 1000] ImageNet logits
    log_p    = imagenet - logsumexp(imagenet)                    # ImageNet log-probabilities
    prior[c] = logsumexp(log_p[groups[c]]) - size_correction * log(len(groups[c]))
               (for "other": the same over each of its parts, then logsumexp of the parts)
    logits   = (prior + f @ residual_weight.T + residual_bias) / temperature + class_bias

* prior: each class owns a group of ImageNet classes (dog = the 118 dog breeds, elephant =
  the three elephants...). The class named "other" owns every ImageNet class that no other
  class of this head owns, so adding "cow" moves the cattle classes out of "other". A class
  with no known group (a user's "bird", say) gets the constant NO_PRIOR_LOG_MASS until
  training teaches it, via the residual, what it looks like.
* size_correction: ImageNet was trained with equal numbers of photos per class, so a group
  of k classes starts with a prior share of k/1000: "other" (some 880 classes) wins ties it
  has not earned, and a three-class "elephant" loses them. Subtracting log(k) would remove
  that prior completely; the default (DEFAULT_SIZE_CORRECTION) removes most of it. Without it,
  many elephants among the project's photos were tagged "other" (docs/PERFORMANCE.md).
* other_parts: known groups (a cat's five ImageNet classes) that keep a share of their own
  inside "other" rather than being counted as a few of its 880 classes. Without it a cat the
  network is unsure of is told apart from a dog by group sizes rather than by what it shows:
  the dog group's smaller correction won, and cats were the "other" photos most often tagged
  dog. Only groups whose own share was measured to help are listed (OTHER_PARTS): giving the
  cattle and hog groups their own shares took elephants the network half-saw as water
  buffalo or hogs away from "elephant".
* residual_weight [C, D], residual_bias [C]: a linear correction learned from the user's
  labels. All zeros at first, so an untrained head agrees exactly with the zero-shot prior.
* temperature (> 0) and class_bias [C]: calibration, fitted after the residual so that a
  stated 90% means right nine times in ten. class_bias is added after the temperature, so
  it is in units of final logits.

training.py fits residual_*, temperature and class_bias (with torch, on cached features);
everything a trainer needs to reproduce `logits` exactly is in these fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger.common.atomic import write_atomically
from tagger.errors import HeadError

OTHER = "other"
DEFAULT_CLASSES: tuple[str, ...] = ("dog", "elephant", OTHER)

# ImageNet-1k indices (standard ILSVRC-2012 order) that a class of the same name inherits as
# its zero-shot prior. Wolves, foxes and wild dogs (269-280) are deliberately not "dog":
# users tagging pets do not mean them.
KNOWN_GROUPS: dict[str, tuple[int, ...]] = {
    "dog": tuple(range(151, 269)),
    "elephant": (101, 385, 386),  # tusker, Indian elephant, African elephant
    "cow": (345, 346, 347),  # ox, water buffalo, bison
    "horse": (339,),  # sorrel, ImageNet's only horse
    "cat": tuple(range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "zebra": (340,),
    "sheep": (348, 349),  # ram, bighorn
    "pig": (341,),  # hog
    "panda": (387, 388),  # lesser panda, giant panda
}

# Names people actually type for the same groups.
ALIASES: dict[str, str] = {
    "dogs": "dog",
    "puppy": "dog",
    "puppies": "dog",
    "elephants": "elephant",
    "cows": "cow",
    "cattle": "cow",
    "horses": "horse",
    "pony": "horse",
    "cats": "cat",
    "kitten": "cat",
    "zebras": "zebra",
    "pigs": "pig",
    "pandas": "panda",
}

# See the module docstring; chosen on the project's photo set together with OTHER_PARTS and the
# whole-frame rule (docs/PERFORMANCE.md); 0 (plain grouping) tags 15% of elephants "other".
DEFAULT_SIZE_CORRECTION = 0.85
# Known groups that keep their own share inside "other" in a new head (see the module docstring).
OTHER_PARTS: tuple[str, ...] = ("cat",)

# The prior of a class with no ImageNet group. The size correction puts confident group
# priors around -5 (a sure "other" photo scores about log(1) - 0.85 * log(880)), so this sits far
# enough below that a new class never wins zero-shot, while its bias can still learn the gap.
NO_PRIOR_LOG_MASS = math.log(1e-6)

HEAD_FORMAT = "tagger.head"
HEAD_VERSION = 1

# No trained or zero-shot weight comes near this; with 1280 features it keeps every logit far
# inside float32's range, where a larger value could overflow to infinity and NaN.
MAX_WEIGHT_MAGNITUDE = 1e6


def known_group(name: str) -> tuple[int, ...] | None:
    key = name.strip().lower()
    return KNOWN_GROUPS.get(ALIASES.get(key, key))


def logsumexp(values: np.ndarray, axis: int = -1) -> np.ndarray:
    peak = np.max(values, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        summed = np.log(np.sum(np.exp(values - peak), axis=axis, keepdims=True))
    return np.squeeze(summed + peak, axis=axis)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def _check_classes(classes: Sequence[str]) -> list[str]:
    names = [str(name) for name in classes]
    if not names:
        raise HeadError("a head needs at least one class")
    if any(not name.strip() for name in names):
        raise HeadError("class names must not be empty")
    folded = [name.strip().lower() for name in names]
    if len(set(folded)) != len(folded):
        raise HeadError(f"duplicate class names in {names}")
    return names


def _is_other(name: str) -> bool:
    return name.strip().lower() == OTHER


@dataclass(eq=False)
class Head:
    """See the module docstring for how the fields combine into logits."""

    classes: list[str]
    # ImageNet indices per class name; classes absent here have no prior (except "other",
    # whose group is always the complement and is never stored).
    groups: dict[str, list[int]]
    imagenet_weight: np.ndarray  # [K, D] float32, K = 1000
    imagenet_bias: np.ndarray  # [K] float32
    residual_weight: np.ndarray  # [C, D] float32
    residual_bias: np.ndarray  # [C] float32
    class_bias: np.ndarray  # [C] float32
    temperature: float = 1.0
    size_correction: float = DEFAULT_SIZE_CORRECTION
    # Names of KNOWN_GROUPS judged apart inside "other" (module docstring). Empty for heads made
    # before it existed, so that their tags stay as they were trained.
    other_parts: tuple[str, ...] = ()
    backbone_id: str = ""
    # Free-form facts a trainer wants to keep with the weights (e.g. label counts); must be
    # JSON-serialisable.
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = _check_classes(self.classes)
        n_classes = len(self.classes)
        self.imagenet_weight = np.ascontiguousarray(self.imagenet_weight, dtype=np.float32)
        self.imagenet_bias = np.ascontiguousarray(self.imagenet_bias, dtype=np.float32)
        self.residual_weight = np.ascontiguousarray(self.residual_weight, dtype=np.float32)
        self.residual_bias = np.ascontiguousarray(self.residual_bias, dtype=np.float32)
        self.class_bias = np.ascontiguousarray(self.class_bias, dtype=np.float32)
        n_imagenet, dim = self.imagenet_weight.shape
        expected = {
            "imagenet_bias": (self.imagenet_bias.shape, (n_imagenet,)),
            "residual_weight": (self.residual_weight.shape, (n_classes, dim)),
            "residual_bias": (self.residual_bias.shape, (n_classes,)),
            "class_bias": (self.class_bias.shape, (n_classes,)),
        }
        for name, (actual, wanted) in expected.items():
            if tuple(actual) != wanted:
                raise HeadError(f"{name} has shape {tuple(actual)}, expected {wanted}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise HeadError(f"temperature must be positive, got {self.temperature}")
        if not (self.size_correction >= 0 and math.isfinite(self.size_correction)):
            raise HeadError(f"size_correction must be >= 0, got {self.size_correction}")
        self.groups = {
            name: sorted({int(i) for i in indices})
            for name, indices in self.groups.items()
            if name in self.classes and not _is_other(name)
        }
        for name, indices in self.groups.items():
            if any(not 0 <= i < n_imagenet for i in indices):
                raise HeadError(f"group of {name!r} has indices outside 0..{n_imagenet - 1}")
        self.other_parts = tuple(str(name) for name in self.other_parts)
        unknown = [name for name in self.other_parts if known_group(name) is None]
        if unknown:
            raise HeadError(f"other_parts names groups Tagger does not know: {unknown}")

    # --- construction --------------------------------------------------------------------

    @classmethod
    def zero_shot(
        cls,
        classes: Sequence[str],
        imagenet_weight: np.ndarray,
        imagenet_bias: np.ndarray,
        *,
        backbone_id: str = "",
        groups: Mapping[str, Sequence[int]] | None = None,
        size_correction: float = DEFAULT_SIZE_CORRECTION,
        other_parts: Sequence[str] = OTHER_PARTS,
    ) -> Head:
        """An untrained head: its tags are exactly the grouped ImageNet classifier's."""
        names = _check_classes(classes)
        chosen: dict[str, list[int]] = {}
        for name in names:
            if groups is not None and name in groups:
                chosen[name] = list(groups[name])
            elif (known := known_group(name)) is not None:
                chosen[name] = list(known)
        dim = np.asarray(imagenet_weight).shape[1]
        return cls(
            classes=names,
            groups=chosen,
            imagenet_weight=imagenet_weight,
            imagenet_bias=imagenet_bias,
            residual_weight=np.zeros((len(names), dim), dtype=np.float32),
            residual_bias=np.zeros(len(names), dtype=np.float32),
            class_bias=np.zeros(len(names), dtype=np.float32),
            size_correction=size_correction,
            other_parts=tuple(other_parts),
            backbone_id=backbone_id,
        )

    def with_classes(self, classes: Sequence[str], *, renamed: Mapping[str, str] | None = None) -> Head:
        """A head for a new class list that keeps whatever carries over.

        Classes kept by name (or renamed, `renamed` mapping old -> new name) keep their
        learned rows and their group; new classes start at zero with their known group, if
        any; dropped classes are simply gone. The shared calibration (temperature) is kept.
        """
        names = _check_classes(classes)
        source_of = {new: old for old, new in (renamed or {}).items()}
        index = {name: i for i, name in enumerate(self.classes)}
        dim = self.feature_dim
        residual_weight = np.zeros((len(names), dim), dtype=np.float32)
        residual_bias = np.zeros(len(names), dtype=np.float32)
        class_bias = np.zeros(len(names), dtype=np.float32)
        groups: dict[str, list[int]] = {}
        for row, name in enumerate(names):
            old = source_of.get(name, name)
            if old in index:
                residual_weight[row] = self.residual_weight[index[old]]
                residual_bias[row] = self.residual_bias[index[old]]
                class_bias[row] = self.class_bias[index[old]]
                if old in self.groups:
                    groups[name] = list(self.groups[old])
                    continue
            if (known := known_group(name)) is not None:
                groups[name] = list(known)
        return Head(
            classes=names,
            groups=groups,
            imagenet_weight=self.imagenet_weight,
            imagenet_bias=self.imagenet_bias,
            residual_weight=residual_weight,
            residual_bias=residual_bias,
            class_bias=class_bias,
            temperature=self.temperature,
            size_correction=self.size_correction,
            other_parts=self.other_parts,
            backbone_id=self.backbone_id,
            info=dict(self.info),
        )

    # --- inference -----------------------------------------------------------------------

    @property
    def feature_dim(self) -> int:
        return int(self.imagenet_weight.shape[1])

    def check_backbone(self, backbone_id: str, feature_dim: int) -> None:
        """Raise HeadError unless features from this backbone are what the head was made for."""
        if feature_dim != self.feature_dim:
            raise HeadError(f"the head expects {self.feature_dim}-d features, the backbone gives {feature_dim}")
        if self.backbone_id and self.backbone_id != backbone_id:
            raise HeadError(f"the head was trained on backbone {self.backbone_id}, not {backbone_id}")

    def membership(self) -> np.ndarray:
        """[C, K] bool: which ImageNet classes feed each class's prior."""
        n_imagenet = self.imagenet_weight.shape[0]
        mask = np.zeros((len(self.classes), n_imagenet), dtype=bool)
        for row, name in enumerate(self.classes):
            if name in self.groups:
                mask[row, self.groups[name]] = True
        owned = mask.any(axis=0)
        for row, name in enumerate(self.classes):
            if _is_other(name):
                mask[row] = ~owned
        return mask

    def imagenet_log_probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = self._features(features) @ self.imagenet_weight.T + self.imagenet_bias
        return logits - logsumexp(logits)[:, None]

    def prior_offsets(self) -> np.ndarray:
        """[C, K] float32: what each ImageNet class adds to its log-probability where it feeds
        a class's prior (-inf where it does not), so that prior[c] = logsumexp(log_p +
        offsets[c]). Every implementation of the head (numpy here, torch for training, the
        explanations and the exported model) computes the prior this one way."""
        mask = self.membership()
        offsets = np.full(mask.shape, -np.inf, dtype=np.float32)
        for row, name in enumerate(self.classes):
            members = np.flatnonzero(mask[row])
            if not len(members):
                continue
            parts = [members]
            if _is_other(name):
                parts = []
                for part_name in self.other_parts:
                    part = np.intersect1d(members, known_group(part_name) or ())
                    if len(part):
                        parts.append(part)
                        members = np.setdiff1d(members, part)
                parts.append(members)
            for part in parts:
                if len(part):
                    offsets[row, part] = -self.size_correction * math.log(len(part))
        return offsets

    def prior_logits(self, features: np.ndarray) -> np.ndarray:
        """[N, C] log of each class's share of the ImageNet probability mass."""
        log_p = self.imagenet_log_probabilities(features)
        offsets = self.prior_offsets()
        prior = np.full((len(log_p), len(self.classes)), NO_PRIOR_LOG_MASS, dtype=np.float32)
        for row in range(len(self.classes)):
            members = np.isfinite(offsets[row])
            if members.any():
                prior[:, row] = logsumexp(log_p[:, members] + offsets[row, members])
        return prior

    def logits(self, features: np.ndarray) -> np.ndarray:
        features = self._features(features)
        residual = features @ self.residual_weight.T + self.residual_bias
        combined = (self.prior_logits(features) + residual) / self.temperature + self.class_bias
        return combined.astype(np.float32, copy=False)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return softmax(self.logits(features))

    def predict(self, features: np.ndarray) -> list[str]:
        return [self.classes[i] for i in np.argmax(self.logits(features), axis=1)]

    def _features(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim == 1:
            features = features[None, :]
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"expected features of shape [N, {self.feature_dim}], got {features.shape}")
        return features

    # --- files ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        description = {
            "classes": self.classes,
            "groups": self.groups,
            "temperature": self.temperature,
            "size_correction": self.size_correction,
            "other_parts": list(self.other_parts),
            "backbone_id": self.backbone_id,
            "info": self.info,
        }
        tensors = {
            "imagenet_weight": self.imagenet_weight,
            "imagenet_bias": self.imagenet_bias,
            "residual_weight": self.residual_weight,
            "residual_bias": self.residual_bias,
            "class_bias": self.class_bias,
        }
        metadata = {
            "format": HEAD_FORMAT,
            "version": str(HEAD_VERSION),
            "head": json.dumps(description),
        }
        return save(tensors, metadata=metadata)

    def save(self, path: str | Path) -> None:
        """Write as safetensors (weights) + JSON metadata, atomically; never pickle."""
        write_atomically(Path(path), self.to_bytes())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Head:
        from safetensors.numpy import load

        # safetensors starts with its header's length, then the header's "{"; the length's low
        # byte may well be 0x80, like a pickle's first byte, so the "{" decides.
        looks_like_safetensors = raw[8:9] == b"{"
        if not looks_like_safetensors and (raw[:1] == b"\x80" or raw[:4] == b"PK\x03\x04"):
            # Pickle protocol 2+ and torch.save's zip: loading those could run code.
            raise HeadError(
                "not a Tagger model file: it is a pickle or PyTorch file, which could run "
                "code when loaded; Tagger only loads the safetensors format"
            )
        try:
            # safetensors validates the header (sizes, offsets, shapes) before it is trusted.
            tensors = load(raw)
            header_len = int.from_bytes(raw[:8], "little")
            metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__") or {}
        except Exception as error:
            raise HeadError(f"not a Tagger model file (not valid safetensors: {error})") from error
        if metadata.get("format") != HEAD_FORMAT:
            raise HeadError("not a Tagger model file (a safetensors file of something else)")
        try:
            if int(metadata.get("version", "0")) > HEAD_VERSION:
                raise HeadError(f"head file version {metadata['version']} is newer than this Tagger understands")
            description = json.loads(metadata["head"])
            head = cls(
                classes=description["classes"],
                groups=description["groups"],
                imagenet_weight=tensors["imagenet_weight"],
                imagenet_bias=tensors["imagenet_bias"],
                residual_weight=tensors["residual_weight"],
                residual_bias=tensors["residual_bias"],
                class_bias=tensors["class_bias"],
                temperature=float(description["temperature"]),
                size_correction=float(description.get("size_correction", DEFAULT_SIZE_CORRECTION)),
                other_parts=tuple(description.get("other_parts", ())),
                backbone_id=description.get("backbone_id", ""),
                info=description.get("info", {}),
            )
            check_usable_weights(head)
            return head
        except HeadError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            # A damaged or hand-made file: say so rather than fail somewhere deeper.
            raise HeadError(f"not a Tagger model file (damaged: {type(error).__name__}: {error})") from error

    @classmethod
    def load(cls, path: str | Path) -> Head:
        """The head in a file, refused (HeadError naming the file) unless it is whole and usable."""
        try:
            return cls.from_bytes(Path(path).read_bytes())
        except HeadError as error:
            raise HeadError(f"{path}: {error}") from error


def check_usable_weights(head: Head) -> None:
    """Raise HeadError unless a head read from a file can tag: at least one ImageNet class and
    one feature, and every weight a finite number of sane size. A NaN or infinity anywhere
    turns every probability into NaN (each photo then gets the first class and no confidence)."""
    n_imagenet, dim = head.imagenet_weight.shape
    if n_imagenet < 1 or dim < 1:
        raise HeadError(f"damaged model file: its ImageNet classifier is {n_imagenet} x {dim}")
    for name in ("imagenet_weight", "imagenet_bias", "residual_weight", "residual_bias", "class_bias"):
        values = getattr(head, name)
        broken = int(np.count_nonzero(~np.isfinite(values)))
        if broken:
            raise HeadError(f"damaged model file: {name} holds {broken} NaN or infinite value(s)")
        largest = float(np.abs(values).max(initial=0.0))
        if largest > MAX_WEIGHT_MAGNITUDE:
            raise HeadError(
                f"damaged model file: {name} holds a value of {largest:.3g}, "
                f"beyond any real model's (at most {MAX_WEIGHT_MAGNITUDE:.0g})"
            )
