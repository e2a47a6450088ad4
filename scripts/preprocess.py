"""RSNA-layout DICOMs -> data/Processed: 224x224 uint8 arrays, manifest, stats, skipped list.

With no arguments it preprocesses data/rsna-pneumonia-detection-challenge/ when the real files
are there, else the synthetic demo dataset in data/demo/ (generated on first use, with a loud
notice). Interrupted runs resume: run the same command again.

    python scripts/preprocess.py
    python scripts/preprocess.py --data-dir /data/rsna --out-dir data/Processed --workers 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pneumocam import cli, paths
from pneumocam.errors import PneumocamError
from pneumocam.preprocess import PreprocessConfig, run_preprocess


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"RSNA-layout folder (default: {paths.rsna_dir()} when it holds the real "
                        f"files, else the demo dataset in {paths.demo_dir()})")
    p.add_argument("--out-dir", type=Path, default=None,
                   help=f"output folder (default: {paths.processed_dir()})")
    p.add_argument("--size", type=int, default=224, help="side of the square output arrays in pixels (default: 224)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of patients (per class) in the validation split (default: 0.1)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of patients (per class) in the test split (default: 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient split (default: 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding worker processes (default: all CPU cores)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete what an earlier run wrote in --out-dir (its arrays, manifest, "
                        "stats, skipped list; never other files), from any source, before writing")
    p.add_argument("--no-fast", dest="fast", action="store_false",
                   help="always decode DICOMs at full size (slower; disables the reduced-size JPEG decode)")
    p.add_argument("--n-demo", type=int, default=None,
                   help="images in the demo dataset if it has to be generated (default: 2000)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = PreprocessConfig(
        data_dir=args.data_dir, out_dir=args.out_dir, size=args.size,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        workers=args.workers, overwrite=args.overwrite, fast=args.fast, n_demo=args.n_demo,
        progress=args.progress,
    )
    try:
        summary = run_preprocess(config)
    except PneumocamError as exc:
        return cli.report_error(exc)
    if summary.n_images == 0:
        # A run that produced nothing must not look like success to a pipeline.
        print(f"error: no image could be written; see {summary.out_dir / 'skipped.csv'}",
              file=sys.stderr)
        return cli.EXIT_FAILED
    return 0


if __name__ == "__main__":
    cli.run_main(main, resume_hint="rerun the same command: finished arrays are kept")
