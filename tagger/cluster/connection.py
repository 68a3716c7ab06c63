"""Reaching Ray: imported only when a command asks for a cluster, so Tagger runs without it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

from tagger.errors import ClusterError

INSTALL_HINT = "pip install 'tagger[cluster]'"
# Ray's own default: the cluster named by RAY_ADDRESS or started with `ray start` on this
# machine, else a Ray of its own started for the run.
AUTO = "auto"


def import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401 - the part Tagger uses, shipped by the extra only
    except ImportError as error:
        raise ClusterError(f"tagging on a cluster needs Ray, which is not installed here: {INSTALL_HINT}") from error
    return ray


@dataclass(frozen=True)
class ClusterResources:
    """What the cluster offers, as Ray counts it when the run starts."""

    nodes: int
    cpus: int
    gpus: int

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU(s)" if self.gpus else ""
        return f"{self.nodes} node(s), {self.cpus} CPU(s){gpus}"


@contextmanager
def connected(address: str = AUTO) -> Iterator[ClusterResources]:
    """Connected to Ray for the block: `address` is "auto", "local" (a new Ray on this machine
    for this run) or a cluster's address ("head-node:6379"). A Ray this process had already
    started (a test, a notebook) is used as it is and left running; one started or joined
    here is let go at the end."""
    ray = import_ray()
    joined_here = not ray.is_initialized()
    if joined_here:
        try:
            # Workers' output would mix with the command's own: stdout carries only data.
            ray.init(address=None if address == AUTO else address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {error}") from error
    try:
        yield _resources(ray)
    finally:
        if joined_here:
            ray.shutdown()


def _resources(ray: ModuleType) -> ClusterResources:
    offered = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return ClusterResources(nodes=nodes, cpus=int(offered.get("CPU", 0)), gpus=int(offered.get("GPU", 0)))
