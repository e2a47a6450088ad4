"""Compare evaluated training runs on the same test images.

Writes metrics/comparison.csv, metrics/comparison.json and images/comparison.png. Each run needs
metrics/<run>_eval.json and metrics/<run>_predictions_test.csv, written by its training script.

    python scripts/compare.py                         # original, balanced (+ posweight if present)
    python scripts/compare.py --runs original balanced --n-boot 2000
    python scripts/compare.py --seeds 0 1 2               # runs <run>-s<seed>, over seeds

With several --seeds it compares the runs trained once per seed (weights/<run>-s<seed>/) and
writes metrics/comparison_seeds.csv, metrics/comparison_seeds.json and
images/comparison_seeds.png instead (the single-seed files are left alone).
"""

from __future__ import annotations

import argparse

from pneumocam import cli, paths
from pneumocam.compare import CompareConfig, compare_runs
from pneumocam.errors import PneumocamError
from pneumocam.seed_comparison import compare_seeds, describe_seed_comparison

DEFAULTS = cli.config_defaults(CompareConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=cli.run_name, default=None,
                        help="run names; the first listed (or 'original') is the reference "
                             "(default: original, balanced and posweight where their files exist)")
    parser.add_argument("--n-boot", type=cli.positive_int, default=DEFAULTS["n_boot"],
                        help="paired bootstrap resamples of the test set (default %(default)s)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=DEFAULTS["seed"],
                        help="bootstrap seed (default %(default)s)")
    parser.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=None,
                        help="training seeds: compare <run>-s<seed> over these seeds (two or "
                             "more; default: the single-seed runs)")
    args = parser.parse_args(argv)
    if args.seeds is not None and len(set(args.seeds)) >= 2:
        return _compare_seeds(args)
    config = CompareConfig(runs=args.runs, n_boot=args.n_boot, seed=args.seed)
    try:
        table = compare_runs(config.runs, n_boot=config.n_boot, seed=config.seed)
    except PneumocamError as exc:
        return cli.report_error(exc)
    cols = ["run", "roc_auc", "roc_auc_ci95_lo", "roc_auc_ci95_hi", "average_precision",
            "sensitivity_at_op", "specificity_at_op", "auc_diff_vs_reference",
            "auc_diff_ci95_lo", "auc_diff_ci95_hi"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if bool(table["synthetic_demo"].iloc[0]):
        print("note: synthetic demo data, not RSNA; these numbers say nothing about pneumonia.")
    print(f"wrote {paths.metrics_dir() / 'comparison.csv'}, "
          f"{paths.metrics_dir() / 'comparison.json'}, {paths.images_dir() / 'comparison.png'}")
    return 0


def _compare_seeds(args: argparse.Namespace) -> int:
    try:
        table = compare_seeds(args.runs or ["original", "balanced"], args.seeds,
                              n_boot=args.n_boot, seed=args.seed)
    except PneumocamError as exc:
        return cli.report_error(exc)
    print(describe_seed_comparison(table))
    print(f"wrote {paths.metrics_dir() / 'comparison_seeds.csv'}, "
          f"{paths.metrics_dir() / 'comparison_seeds.json'}, "
          f"{paths.images_dir() / 'comparison_seeds.png'}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)
