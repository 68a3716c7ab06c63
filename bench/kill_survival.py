"""Kill survival, the long version of tests/test_reliability_kill.py.

SIGKILLs the real command line (`python -m tagger --library DIR ...`) at random moments, many
times over, during the first tagging run's ONNX export, importing, labeling, tagging and quick
training, all on one library. After every kill the library is reopened the way the app does
and checked: SQLite's integrity_check and foreign_key_check, every label whose `tagger label`
exited 0 (a killed one must have applied to all of its photos or none), the current model
loads, the ONNX cache is valid or ignored; and each activity is re-run to prove it resumes.

Kill moments are uniform over the first seconds of `tagger tag` (the export, then the batches).
For the short commands (import, label, train) half are uniform over a whole run and half fall
after the command has opened the library for writing (it writes its pid into library.lock),
since those spend most of their life starting Python; "open" in the table counts the kills
that landed with the library open.

Prints one line per kill, a table, then one JSON line. Exit status 1 if anything was lost.

Run: .venv/bin/python -m bench.kill_survival [--seed N] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# The kill machinery is shared with the test suite, which owns it.
from tagger.inference.machine_cache import CACHE_ENV
from tests.helpers.reliability import (
    KillCampaign,
    build_template_library,
    clone_library,
    train_argv,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Kills wanted per activity at --scale 1: 60 in all.
KILLS = {"onnx-export": 6, "import": 12, "label": 20, "tag": 12, "train": 10}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="random seed for the kill moments (default: time)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every activity's number of kills")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and print where it is")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else time.time_ns() % 2**31
    wanted = {activity: max(1, round(count * options.scale)) for activity, count in KILLS.items()}
    started = time.monotonic()

    work = Path(tempfile.mkdtemp(prefix="tagger-kill-survival-"))
    # The machine-wide cache (the shared export) of this run, never the user's; the commands
    # it kills inherit it.
    os.environ[CACHE_ENV] = str(work / "machine-cache")
    print(f"work folder {work}, seed {seed}, training through: {' '.join(train_argv(Path('LIB'))[1:3])}")
    template = build_template_library(work / "template")
    root = clone_library(template, work / "library")
    campaign = KillCampaign(root, work, seed, template.user_labels, seeded_cache=template.cache_files, log=print)

    # The export first, while the library is small: each round re-tags it after re-exporting.
    # Importing last: the thousands of photos it adds would all wait for the last tag run.
    campaign.export_rounds(wanted["onnx-export"], window_s=15.0)
    campaign.label_rounds(wanted["label"])
    campaign.tag_rounds(wanted["tag"], new_photos=120, window_s=4.0)
    campaign.train_rounds(wanted["train"])
    campaign.import_rounds(wanted["import"], photos_per_round=300)

    figures = list(campaign.figures.values())
    print()
    header = (
        f"{'activity':<12}{'kills':>6}{'open':>6}{'done':>6}{'checks':>8}{'lost':>6}{'resumed':>9}{'temp':>6}"
        f"{'orphans':>9}{'fails':>7}{'seconds':>9}"
    )
    print(header)
    for item in figures:
        print(
            f"{item.activity:<12}{item.kills:>6}{item.kills_with_library_open:>6}{item.finished_first:>6}"
            f"{item.reopen_checks:>8}{item.labels_lost:>6}{item.resumed:>9}{item.leftover_temp_files:>6}"
            f"{item.orphan_model_files:>9}{len(item.failures):>7}{item.seconds:>9.1f}"
        )
    failures = [failure for item in figures for failure in item.failures]
    for failure in failures:
        print(f"FAILURE: {failure}")
    summary = {
        "bench": "kill_survival",
        "seed": seed,
        "kills": sum(item.kills for item in figures),
        "kills_with_library_open": sum(item.kills_with_library_open for item in figures),
        "reopen_checks": sum(item.reopen_checks for item in figures),
        "labels_tracked": sum(1 for label in campaign.expected.values() if label is not None),
        "labels_lost": sum(item.labels_lost for item in figures),
        "failures": len(failures),
        "seconds": round(time.monotonic() - started, 1),
        "activities": {item.activity: item.as_dict() for item in figures},
    }
    if options.keep:
        print(f"kept {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))
    return 0 if not failures and summary["labels_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
