"""``nt2c fetch``: download a dataset of data_manifests/ into the cache."""

from __future__ import annotations

import argparse

HELP = "download a dataset (EMPIAR-10025/10028/10077/10146, SIM1-4) into the cache"
DESCRIPTION = (
    "Download the files of a dataset listed in data_manifests/ into the cache ($NT2C_DATA_DIR, else the OS "
    "cache folder) over http(s), resume broken downloads, and verify each file against the SHA-256 its "
    "manifest lists; a file without one is trusted on first use (its SHA-256 is recorded in "
    "CACHE/DATASET/checksums.txt, reported in one warning line, and checked on every later fetch). "
    "`nt2c fetch --list` shows the datasets."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c fetch`` to ``parser``."""
    parser.add_argument("dataset", nargs="?", help="dataset name or alias (EMPIAR-10025, EM25, SIM1, ...)")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    parser.add_argument(
        "--max-files", type=int, default=None, metavar="N", help="fetch only the first N files"
    )
    parser.add_argument(
        "--mirror", default=None, help="http(s) URL or local folder to fetch from instead of the manifest's"
    )
    parser.add_argument(
        "--cache", default=None, help="cache folder (default: $NT2C_DATA_DIR or the OS cache)"
    )
    parser.add_argument(
        "--params-out",
        default=None,
        metavar="P.yaml",
        help="also write the dataset's acquisition parameters as a params.yaml",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``nt2c fetch``; returns the exit status."""
    from nt2c.config import save_params
    from nt2c.data import available_datasets, fetch, load_manifest
    from nt2c.errors import ConfigError

    if args.list:
        for name, man in available_datasets().items():
            print(f"{name:14s} {'/'.join(man.aliases):14s} {man.title}")
        return 0
    if not args.dataset:
        raise ConfigError("name a dataset (see `nt2c fetch --list`).")
    man = load_manifest(args.dataset)
    if args.max_files is not None and args.max_files < 1:
        raise ConfigError(f"--max-files {args.max_files}: must be at least 1.")
    for path in fetch(man.name, max_files=args.max_files, mirror=args.mirror, cache=args.cache):
        print(path)
    if args.params_out:
        save_params(man.experiment, args.params_out, overwrite=False)
        print(f"parameters written to {args.params_out}")
    return 0
