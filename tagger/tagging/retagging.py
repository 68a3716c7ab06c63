"""Re-tagging from cached features: new tags for the whole library without decoding a photo.

After quick training the backbone is unchanged, so every photo's cached features are still
valid and only the head has to run again: a matrix product over the library. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

from tagger.classifier.head import Head
from tagger.domain import TagResult
from tagger.library.library import Library


def retag_from_features(
    reader: Library, head: Head, photo_ids: Sequence[int], *, backbone_id: str | None = None
) -> list[TagResult]:
    """New tags for photos whose features are cached for the head's backbone: no decoding.

    Photos without cached features are left out of the result (tag those with the full
    pipeline); pass the version's backbone_id when the head does not carry one.
    """
    backbone_id = backbone_id or head.backbone_id
    ids, features = reader.store.features(backbone_id, photo_ids)
    if len(ids) == 0:
        return []
    probabilities = head.probabilities(features).tolist()
    return [TagResult(int(i), probabilities=tuple(p)) for i, p in zip(ids.tolist(), probabilities)]
