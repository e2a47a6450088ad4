"""The whole study in one command: preprocess, train original and balanced, compare, interpret.

Runs on the real RSNA data when data/rsna-pneumonia-detection-challenge holds it, otherwise on
the synthetic demo dataset (made on first use). Re-running resumes where the last run stopped;
a finished stage is skipped only when its recorded settings and data equal this call's (a
training that differs is refused, naming the difference, unless --overwrite is given).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumocam import cli
from pneumocam.cam import METHODS
from pneumocam.errors import PneumocamError
from pneumocam.pipeline import PipelineConfig, run_pipeline

DEFAULTS = cli.config_defaults(PipelineConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="RSNA-layout folder (default: the real data if present, else data/demo)")
    parser.add_argument("--processed-dir", type=Path, default=None,
                        help="where preprocessing writes its arrays (default: data/Processed)")
    parser.add_argument("--epochs", type=cli.positive_int, default=DEFAULTS["epochs"],
                        help="epochs for both trainings (default: chosen by training; short on demo data)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=DEFAULTS["device"],
                        help="device for training and interpretation")
    parser.add_argument("--method", choices=METHODS, default=DEFAULTS["method"], help="CAM method to interpret with")
    parser.add_argument("--n", type=cli.non_negative_int, default=DEFAULTS["n_overlays"], help="CAM overlays saved per run")
    parser.add_argument("--seed", type=cli.non_negative_int, default=DEFAULTS["seed"],
                        help="seed of both trainings and of every bootstrap")
    parser.add_argument("--n-boot", type=cli.positive_int, default=DEFAULTS["n_boot"],
                        help="bootstrap resamples behind every 95%% interval")
    parser.add_argument("--overwrite", action="store_true",
                        help="retrain a run whose recorded settings or data differ from this "
                             "call's (without it the pipeline refuses and names the difference)")
    args = parser.parse_args(argv)
    config = PipelineConfig(data_dir=args.data_dir, processed_dir=args.processed_dir,
                            epochs=args.epochs, device=args.device, method=args.method,
                            n_overlays=args.n, seed=args.seed, n_boot=args.n_boot,
                            overwrite=args.overwrite)
    try:
        run_pipeline(config)
    except PneumocamError as exc:
        return cli.report_error(exc)
    return 0


if __name__ == "__main__":
    cli.run_main(main, resume_hint="rerun the same command: finished stages are not redone")
