"""The whole study in one command: preprocess, train original and balanced, compare, interpret.

Runs on the real RSNA data when data/rsna-pneumonia-detection-challenge holds it, otherwise on
the synthetic demo dataset (made on first use). Re-running resumes where the last run stopped;
a finished stage is skipped only when its recorded settings and data equal this call's (a
training that differs is refused, naming the difference, unless --overwrite is given).

    python scripts/run_pipeline.py                        # the study, one training seed
    python scripts/run_pipeline.py --seeds 0 1 2          # every run once per seed, compared
    python scripts/run_pipeline.py --profile full         # RSNA-size demo (26,684 images), 20 epochs
    python scripts/run_pipeline.py --profile full --demo-n 300 --epochs 1   # the same, small

Every run writes each stage's wall time and peak memory to metrics/pipeline_timing.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumocam import cli
from pneumocam.cam import METHODS
from pneumocam.errors import PneumocamError
from pneumocam.pipeline import PipelineConfig, run_pipeline
from pneumocam.pipeline_profiles import PROFILES, RSNA_N, apply_profile

DEFAULTS = cli.config_defaults(PipelineConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
                        help="seed of both trainings and of every bootstrap (with several "
                             "--seeds: of the bootstrap over seeds)")
    parser.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=None,
                        help="training seeds: several train every run once per seed into "
                             "weights/<run>-s<seed>/ and compare them (metrics/comparison_seeds.*); "
                             "one seed is the same as --seed")
    parser.add_argument("--profile", choices=PROFILES, default="default",
                        help="full: a demo dataset the size of RSNA stage 2 in data/demo-n<N>, "
                             "preprocessed into data/Processed-demo-n<N>, trained with the "
                             "real-data defaults (20 epochs)")
    parser.add_argument("--demo-n", type=cli.positive_int, default=None,
                        help=f"images of the full profile's demo (default {RSNA_N:,}; a few "
                             "hundred run the same stages on a CPU in minutes)")
    parser.add_argument("--n-boot", type=cli.positive_int, default=DEFAULTS["n_boot"],
                        help="bootstrap resamples behind every 95%% interval")
    parser.add_argument("--overwrite", action="store_true",
                        help="retrain a run whose recorded settings or data differ from this "
                             "call's (without it the pipeline refuses and names the difference)")
    args = parser.parse_args(argv)
    seed, seeds = args.seed, args.seeds
    if seeds is not None and len(set(seeds)) != len(seeds):
        parser.error(f"--seeds {' '.join(map(str, seeds))}: each seed once")
    if seeds is not None and len(seeds) == 1:  # one seed: the single-seed layout
        if seed != DEFAULTS["seed"] and seeds[0] != seed:
            parser.error(f"--seed {seed} and --seeds {seeds[0]} disagree: pass one of them")
        seed, seeds = seeds[0], None
    config = PipelineConfig(data_dir=args.data_dir, processed_dir=args.processed_dir,
                            epochs=args.epochs, device=args.device, method=args.method,
                            n_overlays=args.n, seed=seed, n_boot=args.n_boot,
                            overwrite=args.overwrite, seeds=seeds)
    try:
        config = apply_profile(config, args.profile, args.demo_n)
        run_pipeline(config)
    except PneumocamError as exc:
        return cli.report_error(exc)
    return 0


if __name__ == "__main__":
    cli.run_main(main, resume_hint="rerun the same command: finished stages are not redone")
