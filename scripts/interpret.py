"""Class activation maps of a trained run, measured against the radiologists' boxes.

    python scripts/interpret.py --weights weights/balanced/best.pth --save-maps

Writes images/cam/<run>/*.png, images/cam/<run>_grid_{tp,fp,fn,tn}.png,
metrics/<run>_localization.{json,csv} and, with --save-maps, metrics/<run>_maps.npy. A quick look
with --limit N writes the same under the name <run>_limitN, never over the full results. The data
read must be the data the run was trained on (source, labels, split); another folder is refused.

    python scripts/interpret.py --method all              # every method on the same split
    python scripts/interpret.py --methods cam,gradcam,layercam

compares the methods instead (pneumocam.method_comparison): metrics/<run>_methods.{csv,json},
images/<run>/methods.png and images/<run>/methods_maps.png (the best three side by side).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pneumocam import cli, paths
from pneumocam.cam import METHODS
from pneumocam.errors import ConfigError, PneumocamError
from pneumocam.interpret import InterpretConfig, interpret
from pneumocam.method_comparison import SLOW_METHODS, MethodsConfig, compare_methods, parse_methods
from pneumocam.processed import SPLITS

DEFAULTS = cli.config_defaults(InterpretConfig)
METHOD_DEFAULTS = cli.config_defaults(MethodsConfig)


def _methods(text: str) -> tuple[str, ...]:
    """--methods: argparse turns the ValueError into a usage error (exit 2) with the message."""
    try:
        return parse_methods(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=paths.run_files("balanced")["best"],
                   help="checkpoint of the run to interpret; the run name is its folder's name "
                        "(default: weights/balanced/best.pth)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="processed data folder; it must hold the data the run was trained on "
                        "(default: the folder recorded in the run's config.json, else "
                        "data/Processed)")
    p.add_argument("--split", choices=SPLITS, default=DEFAULTS["split"], help="split to interpret")
    p.add_argument("--method", choices=(*METHODS, "all"), default=DEFAULTS["method"],
                   help="class activation map method; 'all' compares every method on the same "
                        "split (as --methods all)")
    p.add_argument("--methods", type=_methods, default=None,
                   help="compare these methods on the same split: 'all' or a comma-separated "
                        f"list of {', '.join(METHODS)}; writes metrics/<run>_methods.csv (the "
                        "overlay, grid, map and submission flags do not apply)")
    p.add_argument("--slow-limit", type=cli.positive_int, default=METHOD_DEFAULTS["slow_limit"],
                   help="with --methods: images per split (class-stratified) for the slow methods "
                        f"({', '.join(SLOW_METHODS)}) when a split is larger (default: "
                        f"{METHOD_DEFAULTS['slow_limit']})")
    p.add_argument("--n", type=cli.non_negative_int, default=DEFAULTS["n"],
                   help="number of single-image overlays (positives first, then negatives)")
    p.add_argument("--n-grid", type=cli.non_negative_int, default=DEFAULTS["n_grid"], help="examples per confusion-matrix grid")
    p.add_argument("--save-maps", action="store_true",
                   help="also write metrics/<run>_maps.npy (raw maps of the whole split) and its index")
    p.add_argument("--batch-size", type=cli.positive_int, default=DEFAULTS["batch_size"], help="images per forward pass")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=DEFAULTS["device"],
                   help="where the model runs (auto: CUDA when available)")
    p.add_argument("--seed", type=cli.non_negative_int, default=DEFAULTS["seed"], help="seed of the bootstrap and the sanity check")
    p.add_argument("--n-boot", type=cli.positive_int, default=DEFAULTS["n_boot"], help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--limit", type=cli.positive_int, default=DEFAULTS["limit"],
                   help="use only the first LIMIT images of each split (a quick look; its "
                        "outputs are named <run>_limitLIMIT and never replace the full ones)")
    p.add_argument("--no-report", action="store_true",
                   help="do not rebuild the offline report images/index.html at the end")
    p.add_argument("--no-submission", action="store_true",
                   help="skip the Kaggle submission even when stage_2_test_images is present")
    return p.parse_args(argv)


def compare(args: argparse.Namespace) -> int:
    """--method all / --methods: every method on the same split, one table."""
    config = MethodsConfig(
        weights=args.weights, methods=args.methods or METHODS, data_dir=args.data_dir,
        split=args.split, batch_size=args.batch_size, device=args.device, seed=args.seed,
        n_boot=args.n_boot, limit=args.limit, slow_limit=args.slow_limit)
    try:
        result = compare_methods(config)
    except PneumocamError as exc:
        return cli.report_error(exc)
    table = pd.DataFrame(result["rows"]).set_index("method")
    print(table[["feature_map", "n_images", "pointing_game", "mass_in_boxes", "iou",
                 "rsna_metric", "maps_per_second"]].round(3).to_string())
    print(f"best first: {', '.join(result['ranking'])}; on {result['device']}")
    if result["synthetic_demo"]:
        print("note: synthetic demo data; these numbers say nothing about pneumonia.")
    for name, path in result["outputs"].items():
        print(f"  {name:<12} {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.method == "all" or args.methods is not None:
        return compare(args)
    config = InterpretConfig(
        weights=args.weights, data_dir=args.data_dir, split=args.split, method=args.method,
        n=args.n, n_grid=args.n_grid, save_maps=args.save_maps, batch_size=args.batch_size,
        device=args.device, seed=args.seed, n_boot=args.n_boot, limit=args.limit,
        submission=not args.no_submission,
    )
    try:
        result = interpret(config)
    except PneumocamError as exc:
        return cli.report_error(exc)
    pg, iou = result["pointing_game"], result["iou"]
    print(f"{result['run']} ({result['method']}, {result['split']}, {result['n_images']} positive images): "
          f"pointing game {pg['value']:.3f} [{pg['ci95'][0]:.3f}, {pg['ci95'][1]:.3f}], "
          f"IoU {iou['value']:.3f}, RSNA metric {result['detection']['rsna_metric']:.4f}, "
          f"sanity check {'passed' if result['sanity_check']['passed'] else 'FAILED'}")
    if result["synthetic_demo"]:
        print("note: synthetic demo data; these numbers say nothing about pneumonia.")
    if result.get("limit") is not None:
        print(f"note: a partial look ({result['limit']} images per split), saved apart from the "
              "run's full interpretation.")
    for name, path in result["outputs"].items():
        print(f"  {name:<18} {path}")
    if not args.no_report:
        from pneumocam.report_site import write_site

        try:
            print(f"report: open {write_site()} in a browser (the CAM gallery is linked from it)")
        except PneumocamError as exc:  # the interpretation is written; only the page is stale
            print(f"note: the report was not rebuilt ({exc}); rerun python scripts/report.py")
    return 0


if __name__ == "__main__":
    cli.run_main(main)
