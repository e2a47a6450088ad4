"""Write the synthetic RSNA-format demo dataset (the embedded default data).

    python scripts/make_demo_data.py                       # 2000 images into data/demo
    python scripts/make_demo_data.py --out /tmp/demo --n 200 --seed 1 --workers 2

The same --seed gives byte-identical files whatever --workers; rerunning with the same n, seed
and parameters finds the finished dataset and skips the work; another n, seed or --config is
refused unless --overwrite (which deletes only the earlier demo's own files).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pneumocam import cli, paths
from pneumocam.demo import DEMO_DEFAULT_N, DemoConfig, make_demo_dataset
from pneumocam.errors import PneumocamError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=paths.demo_dir(),
                   help="output folder: empty, new, or an earlier demo dataset (default: data/demo)")
    p.add_argument("--n", type=int, default=DEMO_DEFAULT_N,
                   help=f"number of images / patients (default {DEMO_DEFAULT_N}; RSNA stage 2 has 26684)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: all CPUs; 1 = no subprocesses)")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON file of DemoConfig overrides, e.g. {\"faint_fraction\": 0.4}")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished demo dataset of another --n/--seed/--config in --out "
                        "(only the demo's own files are deleted)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides = json.loads(args.config.read_text()) if args.config else {}
        if not isinstance(overrides, dict):
            raise ValueError("expected a JSON object of DemoConfig fields")
        config = DemoConfig.from_dict(overrides)
    except (PneumocamError, OSError, ValueError, TypeError) as exc:  # unreadable or bad --config
        print(f"error: --config {args.config}: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    try:
        summary = make_demo_dataset(args.out, n=args.n, seed=args.seed, workers=args.workers,
                                    config=config, progress=not args.quiet,
                                    overwrite=args.overwrite)
    except PneumocamError as exc:
        return cli.report_error(exc)
    counts = summary["counts"] or {}
    if summary["skipped"]:
        print(f"{args.out} already holds this demo dataset (n={args.n}, seed={args.seed}, same "
              "parameters): nothing to do.")
    else:
        print(f"Wrote {summary['n']} synthetic images to {args.out} in {summary['elapsed_s']:.1f} s "
              f"({summary['workers']} workers).")
    if counts:
        print(f"classes {counts.get('classes')}; views {counts.get('views')}; boxes {counts.get('boxes')}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, resume_hint="rerun the same command: finished images are kept")
