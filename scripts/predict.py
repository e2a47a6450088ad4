"""Pneumonia probability and CAM overlay for DICOM / PNG / JPEG files, with a trained run.

    python scripts/predict.py --weights weights/balanced/best.pth scan1.dcm scan2.png

One line per file (probability, decision at the run's operating threshold, overlay file);
overlays go to images/predictions/<stem>_cam.png (inputs sharing a stem get the parent folder's
name added; an overlay of the same name from an earlier call is replaced). Exit status 1 when any
file could not be read or gave no finite prediction, 2 when nothing could be done.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pneumocam import cli, paths
from pneumocam.cam import METHODS
from pneumocam.errors import PneumocamError
from pneumocam.predict import PredictConfig, predict


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="DICOM, PNG or JPEG files to classify")
    p.add_argument("--weights", type=Path, default=paths.run_files("balanced")["best"],
                   help="checkpoint of the run to use (default: weights/balanced/best.pth)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="folder for the <stem>_cam.png overlays (default: images/predictions)")
    p.add_argument("--method", choices=METHODS, default="cam", help="class activation map method")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (auto: CUDA when available)")
    p.add_argument("--csv", type=Path, default=None, help="also write the results to this CSV")
    p.add_argument("--batch-size", type=cli.positive_int, default=16,
                   help="files per forward pass (>= 1)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="processed folder whose stats.json normalises the images when the run's "
                        "config.json has no stats")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = PredictConfig(weights=args.weights, files=list(args.files), out_dir=args.out_dir,
                           method=args.method, device=args.device, csv=args.csv,
                           batch_size=args.batch_size, data_dir=args.data_dir)
    try:
        results = predict(config)
    except PneumocamError as exc:
        return cli.report_error(exc)
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) failed (see the errors above).", file=sys.stderr)
        return cli.EXIT_FAILED
    return 0


if __name__ == "__main__":
    cli.run_main(main)
