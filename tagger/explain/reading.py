"""Evidence in words: where in the frame the model found a class, and what each part looks like.

Two sentences, for the preview under the heatmap and for `tagger explain`: which thirds of
the frame hold the evidence for the class (and which show nothing the model counts as it), with
each share in percent and where the strongest evidence lies; then what each third looks like
to the model on its own, with its probability.

No torch: the GUI thread writes these from cached evidence.
"""

from __future__ import annotations

import numpy as np

from tagger.explain.evidence import Evidence, FramePart, evidence_shares

# A part holding at least this share of the evidence is where the evidence is.
MAIN_SHARE = 0.25
# Below this share a part holds nothing worth naming, unless on its own it looks like the class.
NEGLIGIBLE_SHARE = 0.05
# Where no part looks like the class first and none gives it this probability, the map's peak
# (always 1) is the least faint of faint evidence, and is said to be.
FAINT_PROBABILITY = 0.25


def read_evidence(evidence: Evidence) -> list[str]:
    """Plain sentences: where the evidence lies, then what each part looks like on its own."""
    sentences = [_where(evidence)]
    looks = _looks(evidence.parts)
    if looks:
        sentences.append(looks)
    return sentences


def _where(evidence: Evidence) -> str:
    name = evidence.class_name
    shares = evidence_shares(evidence)
    if not any(shares):
        return f"No part of the photo shows anything the model counts as {name}."
    order = sorted(range(len(shares)), key=lambda index: -shares[index])
    main = [index for index in order if shares[index] >= MAIN_SHARE] or order[:1]
    peak_part, across = _peak(evidence)
    if _faint(evidence):
        most = max(part.looks_like.get(name, 0.0) for part in evidence.parts)
        return (
            f"Nothing in the photo looks much like {name} to the model (at most {_percent(most)} in any third); "
            f"the faint evidence there is lies mostly in the {evidence.parts[order[0]].name} "
            f"({_percent(shares[order[0]])} of it)."
        )
    if len(main) == len(shares):
        spread = ", ".join(f"{evidence.parts[index].name} {_percent(shares[index])}" for index in range(len(shares)))
        return (
            f"The {name} evidence is spread over the whole frame ({spread}), "
            f"strongest {across} of the {evidence.parts[peak_part].name}."
        )
    placed = [f"the {evidence.parts[main[0]].name} ({_percent(shares[main[0]])} of it)"]
    placed += [f"the {evidence.parts[index].name} ({_percent(shares[index])})" for index in main[1:]]
    where = f"The {name} evidence is in {' and '.join(placed)}, "
    where += f"strongest {across} of " + ("it" if len(main) == 1 else f"the {evidence.parts[peak_part].name}")
    rest = [index for index in range(len(shares)) if index not in main]
    little = [index for index in rest if shares[index] >= NEGLIGIBLE_SHARE]
    # A third near the subject can look like it on its own while holding none of the evidence.
    near = [index for index in rest if index not in little and _top(evidence.parts[index]) == name]
    empty = [index for index in rest if index not in little and index not in near]
    clauses = []
    if little:
        amounts = ", ".join(_percent(shares[index]) for index in little)
        clauses.append(f"{_names(evidence.parts, little)} {_verb('holds', little)} a little ({amounts})")
    if near:
        clauses.append(f"{_names(evidence.parts, near)} {_verb('holds', near)} almost none of it")
    if empty:
        clauses.append(f"{_names(evidence.parts, empty)} {_verb('shows', empty)} nothing the model counts as {name}")
    return where + "".join(f"; {clause}" for clause in clauses) + "."


def _looks(parts: tuple[FramePart, ...]) -> str:
    described = [part for part in parts if part.looks_like]
    if not described:
        return ""
    phrases = []
    for position, part in enumerate(described):
        top = _top(part)
        verb = "looks like " if position == 0 else "like "
        phrases.append(f"the {part.name} {verb}{top} ({_percent(part.looks_like[top])})")
    return f"On its own, {', '.join(phrases)}."


def _peak(evidence: Evidence) -> tuple[int, str]:
    """The part holding the map's peak, and where across the frame the peak lies, in words."""
    heat = np.asarray(evidence.heat)
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    height, width = heat.shape
    if evidence.landscape:
        along, across = (column + 0.5) / width, (row + 0.5) / height
        words = ("towards the top", "in the middle", "towards the bottom")
    else:
        along, across = (row + 0.5) / height, (column + 0.5) / width
        words = ("towards the left", "in the middle", "towards the right")
    part = next(
        (index for index, part in enumerate(evidence.parts) if part.start <= along < part.end),
        len(evidence.parts) - 1,
    )
    return part, words[min(int(across * 3), 2)]


def _faint(evidence: Evidence) -> bool:
    parts = [part for part in evidence.parts if part.looks_like]
    return bool(parts) and all(
        _top(part) != evidence.class_name and part.looks_like.get(evidence.class_name, 0.0) < FAINT_PROBABILITY
        for part in parts
    )


def _top(part: FramePart) -> str:
    return max(part.looks_like, key=part.looks_like.__getitem__) if part.looks_like else ""


def _names(parts: tuple[FramePart, ...], indices: list[int]) -> str:
    """'the right third', or 'the middle and right thirds'."""
    names = [parts[index].name for index in indices]
    if len(names) > 1 and all(name.endswith(" third") for name in names):
        return "the " + " and ".join(name.removesuffix(" third") for name in names) + " thirds"
    return " and ".join(f"the {name}" for name in names)


def _verb(singular: str, indices: list[int]) -> str:
    return singular if len(indices) == 1 else singular.removesuffix("s")


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"
