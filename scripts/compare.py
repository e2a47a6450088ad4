"""Compare evaluated training runs on the same test images.

Writes metrics/comparison.csv, metrics/comparison.json and images/comparison.png. Each run needs
metrics/<run>_eval.json and metrics/<run>_predictions_test.csv, written by its training script.

    python scripts/compare.py                         # original, balanced (+ posweight if present)
    python scripts/compare.py --runs original balanced --n-boot 2000
"""

from __future__ import annotations

import argparse

from pneumocam import cli, paths
from pneumocam.compare import CompareConfig, compare_runs
from pneumocam.errors import PneumocamError

DEFAULTS = cli.config_defaults(CompareConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=cli.run_name, default=None,
                        help="run names; the first listed (or 'original') is the reference "
                             "(default: original, balanced and posweight where their files exist)")
    parser.add_argument("--n-boot", type=cli.positive_int, default=DEFAULTS["n_boot"],
                        help="paired bootstrap resamples of the test set (default %(default)s)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=DEFAULTS["seed"],
                        help="bootstrap seed (default %(default)s)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    cli.run_main(main)
