"""`tagger tag --cluster`: the same run as `tagger tag`, its photos decoded and tagged by Ray
workers (tagger.cluster), its results stored here through the library's one writer."""

from __future__ import annotations

import argparse
import sys

from tagger.cli.console import ProgressBar
from tagger.cli.support import EXIT_FAILURE, EXIT_OK, open_library

SHARED_STORAGE_HINT = (
    "the workers must see every photo at the same path as this machine (shared storage mounted "
    "alike on every node); they were left untagged, so a run after fixing that does only them"
)


def cmd_tag_on_cluster(args: argparse.Namespace, network: str | None) -> int:
    """`network`: the stock network asked for with --backbone, as for a local run."""
    from tagger.cluster.connection import connected
    from tagger.cluster.model_files import ModelFiles
    from tagger.cluster.tagging import ClusterTagging, worker_device
    from tagger.tagging.runner import network_to_switch_to, tag_library

    with connected(args.cluster) as resources, open_library(args) as library:
        device = worker_device(resources, args.device)
        current = library.current_model_version()
        switch_to = network_to_switch_to(current, network)
        model = ModelFiles.of_version(current, library.cache_dir, library.root, switch_to, device)
        tagging = ClusterTagging(resources, model, device=device, workers=args.workers)
        engine = model.cpu_engine()
        bar = ProgressBar("Tagging")
        try:
            outcome = tag_library(
                library, include_tagged=args.all, progress=bar, engine=engine, tag_photos=tagging, network=network
            )
        finally:
            bar.close()
    outcome.engine = tagging.describe(engine)
    for photo in tagging.unreachable:
        print(f"unreachable\t{photo.path}\t{photo.reason} (on {photo.node})")
    if outcome.tagged or outcome.labeled_features or outcome.unreadable or not tagging.unreachable:
        print(outcome.describe())
    if tagging.unreachable:
        print(f"tagger: {len(tagging.unreachable)} photo(s) could not be opened on the workers:", file=sys.stderr)
        print(SHARED_STORAGE_HINT, file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
