"""Learning from the photos nobody labeled: a nearest-neighbour graph over cached features,
and label propagation along it.

A user labels a handful of photos but the library holds thousands. Photos of one kind sit
close together in the backbone's feature space, so a label spreads to its neighbours, and
their neighbours, far more reliably than a linear classifier fitted to the handful alone
extrapolates (Zhou et al., "Learning with Local and Global Consistency", 2004). The
propagated labels then become pseudo-labels that the head is trained on (see training.py).

numpy only; the graph is kept as neighbour lists, so memory and time grow as N * k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_NEIGHBOURS = 10
# How much of a node's label comes from its neighbours rather than its own seed. 0.9 was the
# best of 0.5-0.95 on the project's photos (bench/learning_curve.py) at 2 to 20 labels per class.
DEFAULT_ALPHA = 0.9
DEFAULT_ITERATIONS = 40
# Raising cosine similarity to this power makes the closest neighbours count much more than the
# k-th one, which keeps labels from leaking across a cluster border through a weak link.
_SIMILARITY_POWER = 3
_ROWS_PER_CHUNK = 1024


@dataclass(frozen=True)
class NeighbourGraph:
    """A symmetric kNN graph as edge lists sorted by source node, with weights already
    normalised D^-1/2 A D^-1/2. Every node has at least k edges (the ones it chose)."""

    targets: np.ndarray  # int64 [E]
    weights: np.ndarray  # float64 [E]
    starts: np.ndarray  # int64 [N]: where each node's edges begin in `targets`

    @property
    def n_nodes(self) -> int:
        return len(self.starts)

    def spread(self, values: np.ndarray) -> np.ndarray:
        """S @ values for values [N, C]: each node's weighted sum of its neighbours' rows."""
        if len(self.targets) == 0:
            return np.zeros_like(values)
        return np.add.reduceat(values[self.targets] * self.weights[:, None], self.starts, axis=0)


def neighbour_graph(features: np.ndarray, neighbours: int = DEFAULT_NEIGHBOURS) -> NeighbourGraph:
    """The cosine kNN graph of feature rows [N, D], symmetric: an edge if either end chose it."""
    n_nodes = len(features)
    k = min(neighbours, n_nodes - 1)
    if k < 1:
        return NeighbourGraph(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(n_nodes, dtype=np.int64))
    unit = np.asarray(features, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    nearest = np.empty((n_nodes, k), dtype=np.int64)
    similarity = np.empty((n_nodes, k), dtype=np.float32)
    for start in range(0, n_nodes, _ROWS_PER_CHUNK):
        block = unit[start : start + _ROWS_PER_CHUNK] @ unit.T
        rows = np.arange(len(block))
        block[rows, start + rows] = -np.inf  # a node is not its own neighbour
        chosen = np.argpartition(-block, k - 1, axis=1)[:, :k]
        nearest[start : start + len(block)] = chosen
        similarity[start : start + len(block)] = np.take_along_axis(block, chosen, axis=1)
    sources = np.repeat(np.arange(n_nodes), k)
    targets = nearest.ravel()
    affinity = np.maximum(similarity.ravel().astype(np.float64), 0.0) ** _SIMILARITY_POWER
    # Symmetric: both directions of every chosen edge; an edge chosen by both ends is counted
    # twice, which is what A + A.T means and gives mutual neighbours their extra weight.
    sources, targets = np.concatenate([sources, targets]), np.concatenate([targets, sources])
    affinity = np.concatenate([affinity, affinity])
    degree = np.bincount(sources, weights=affinity, minlength=n_nodes)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    weights = affinity * scale[sources] * scale[targets]
    order = np.argsort(sources, kind="stable")
    starts = np.searchsorted(sources[order], np.arange(n_nodes))
    return NeighbourGraph(targets[order], weights[order], starts)


def propagate_labels(
    graph: NeighbourGraph,
    seeds: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    iterations: int = DEFAULT_ITERATIONS,
) -> np.ndarray:
    """Class scores [N, C] after spreading `seeds` [N, C] along the graph, rows summing to 1.

    Iterates F <- alpha * S F + (1 - alpha) * seeds, whose fixed point is
    (1 - alpha) (I - alpha S)^-1 seeds. Labeled photos are seeded with their one-hot label and
    the rest with the classifier's probabilities, so an isolated photo keeps its own guess.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    seeds = np.asarray(seeds, dtype=np.float64)
    scores = seeds.copy()
    for _ in range(iterations):
        scores = alpha * graph.spread(scores) + (1.0 - alpha) * seeds
    return scores / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)


def unit_rows(features: np.ndarray) -> np.ndarray:
    rows = np.asarray(features, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def nearest_label_in_reach(
    query: np.ndarray, pool: np.ndarray, label_features: np.ndarray, widen: float = 1.0
) -> np.ndarray:
    """int [Q]: for each row of `query` (photos of `pool`), the nearest label among its
    neighbourhood in the pool, or -1 when no label is that close.

    The neighbourhood is the photo's k nearest photos of the pool, with k the number of pool
    photos per label (at least DEFAULT_NEIGHBOURS): as many as each label would speak for if
    the labels were spread evenly. A rank, not a distance, so it means the same in a tight
    cluster of horses as among the scattered photos a catch-all "other" gathers. `widen`
    multiplies k.
    """
    if len(label_features) == 0 or len(query) == 0 or len(pool) < 2:
        return np.full(len(query), -1, dtype=np.int64)
    k = min(len(pool) - 1, int(widen * max(DEFAULT_NEIGHBOURS, -(-len(pool) // len(label_features)))))
    pool_units = unit_rows(pool).T
    label_units = unit_rows(label_features).T
    nearest = np.full(len(query), -1, dtype=np.int64)
    for start in range(0, len(query), _ROWS_PER_CHUNK):
        rows = unit_rows(query[start : start + _ROWS_PER_CHUNK])
        # The k+1-th most similar photo of the pool: the photo itself comes first.
        reach = np.partition(rows @ pool_units, -(k + 1), axis=1)[:, -(k + 1)]
        to_labels = rows @ label_units
        best = to_labels.argmax(axis=1)
        within = to_labels[np.arange(len(rows)), best] >= reach
        nearest[start : start + len(rows)] = np.where(within, best, -1)
    return nearest
