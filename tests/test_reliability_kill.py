"""Killed at any moment: SIGKILL the real CLI at random moments of importing, labeling,
tagging and training, reopen the library after every kill, and find nothing lost.

After each kill: `PRAGMA integrity_check` is ok, every label whose `tagger label` exited 0
is there (a killed one applied to all of its photos or none), the current model loads, the
ONNX cache is valid or ignored, and re-running the command finishes the job.

A bounded number of kills per activity keeps this under a minute; bench/kill_survival.py
is the long version. The moments are random: set TAGGER_KILL_SEED to replay a run's choices
(the timing of the machine still varies)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers.reliability import (
    ActivityFigures,
    KillCampaign,
    TemplateLibrary,
    clone_library,
)

pytestmark = pytest.mark.slow

KILLS_PER_ACTIVITY = 6


@pytest.fixture
def campaign(template: TemplateLibrary, tmp_path: Path) -> KillCampaign:
    root = clone_library(template, tmp_path / "library")
    seed = int(os.environ.get("TAGGER_KILL_SEED", time.time_ns() % 2**31))
    return KillCampaign(root, tmp_path, seed, template.user_labels, seeded_cache=template.cache_files, log=print)


def assert_survived(campaign: KillCampaign, figures: ActivityFigures, kills: int) -> None:
    where = f"(TAGGER_KILL_SEED={campaign.seed}; figures {figures.as_dict()})"
    assert not figures.failures, "\n".join(figures.failures[:20]) + "\n" + where
    assert figures.labels_lost == 0, where
    assert figures.kills >= kills, f"only {figures.kills} kills landed {where}"


def test_import_survives_kills_and_resumes(campaign: KillCampaign) -> None:
    figures = campaign.import_rounds(KILLS_PER_ACTIVITY, photos_per_round=120)
    assert_survived(campaign, figures, KILLS_PER_ACTIVITY)
    assert figures.resumed == figures.rounds


def test_labels_survive_kills(campaign: KillCampaign) -> None:
    figures = campaign.label_rounds(10)
    assert_survived(campaign, figures, 10)


def test_tagging_survives_kills_and_resumes(campaign: KillCampaign) -> None:
    figures = campaign.tag_rounds(KILLS_PER_ACTIVITY, new_photos=80, window_s=3.0)
    assert_survived(campaign, figures, KILLS_PER_ACTIVITY)
    assert figures.resumed == 1


def test_training_survives_kills(campaign: KillCampaign) -> None:
    figures = campaign.train_rounds(KILLS_PER_ACTIVITY)
    assert_survived(campaign, figures, KILLS_PER_ACTIVITY)
    assert figures.resumed == 1


@pytest.mark.parametrize(
    "state", ["graph missing", "sidecar missing", "graph truncated", "sidecar truncated", "only a temporary file"]
)
def test_what_a_kill_mid_export_can_leave_is_ignored(template: TemplateLibrary, tmp_path: Path, state: str) -> None:
    """A kill lands in the ONNX export's few milliseconds of writing too rarely to wait for:
    each state it could leave (export_onnx writes the sidecar, then the graph, each by
    rename) is made by hand. Tagger must treat it as no cache, never load it half."""
    from tagger.inference.onnx_engine import OnnxEngine, onnx_cache_paths
    from tagger.inference.preprocessing import default_backbone_id

    graph, sidecar = onnx_cache_paths(template.root / "cache", default_backbone_id())
    cache = tmp_path / "cache"
    cache.mkdir()
    for source in (graph, sidecar):
        (cache / source.name).write_bytes(source.read_bytes())
    copied_graph, copied_sidecar = cache / graph.name, cache / sidecar.name
    if state == "graph missing":
        copied_graph.unlink()
    elif state == "sidecar missing":
        copied_sidecar.unlink()
    elif state == "graph truncated":
        copied_graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3])
    elif state == "sidecar truncated":
        copied_sidecar.write_bytes(sidecar.read_bytes()[:1000])
    else:
        copied_graph.rename(cache / f".{graph.name}.x1y2z3.tmp")
        copied_sidecar.unlink()
    assert OnnxEngine.from_cache(cache, default_backbone_id()) is None
