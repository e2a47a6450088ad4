"""The whole study in one command: preprocess -> train original -> train balanced -> compare -> interpret.

Each stage runs as its own script in a subprocess, exactly as a person would run it, so a
stage's memory is released before the next starts and a crash names the stage. The pipeline
resumes where a previous run stopped, and a stage is skipped only when what it recorded equals
what is asked now (settings, and the data: source kind, labels hash and split fingerprint):

- preprocessing is skipped when the processed folder holds valid outputs (the preprocess stage
  itself re-uses finished arrays);
- training: a run with ``metrics/<run>_eval.json`` whose ``weights/<run>/config.json`` records
  the requested settings (:data:`TRAIN_SETTINGS`) and data is done; one with
  ``weights/<run>/last.pth`` but no evaluation is continued with ``--resume`` under the same
  condition. When the recorded settings or data differ, the pipeline refuses and names the
  difference; ``--overwrite`` retrains (training is the expensive stage: never redone silently);
- interpretation is skipped when its localization JSON records the requested settings
  (:data:`INTERPRET_SETTINGS`) and data and is newer than the run's best weights; otherwise it
  simply runs again (it is cheap);
- the comparison is cheap and always recomputed.

Several training seeds (``seeds=[0, 1, 2]``) train and interpret every run once per seed as
``<run>-s<seed>`` (:func:`pneumocam.seed_comparison.seed_run_name`), each under the rules above,
and compare them with ``scripts/compare.py --seeds`` (``metrics/comparison_seeds.*``); one seed
keeps the single-seed layout (``weights/original/`` ...). Every call records each stage's wall
time and peak memory in ``metrics/pipeline_timing.json`` (:mod:`pneumocam.stage_timing`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .errors import ConfigError
from .processed import DataIdentity, data_identity, run_data_dir, run_data_identity
from .provenance import read_json_object
from .seed_comparison import check_seeds, seed_runs
from .stage_timing import PipelineTimer

#: Training settings that decide a run's result: a finished run counts only when they match.
TRAIN_SETTINGS = ("sampler", "epochs", "batch_size", "lr", "weight_decay", "schedule", "seed",
                  "pretrained", "arch", "limit", "pos_weight", "n_boot")
#: Interpretation settings that decide its outputs.
INTERPRET_SETTINGS = ("split", "method", "n", "n_boot", "seed", "limit", "save_maps")

RUNS = ("original", "balanced")


@dataclass
class PipelineConfig:
    """Settings of the one-command study.

    Attributes:
        data_dir: RSNA-layout folder; None picks the real data when present, else the demo.
        processed_dir: output of preprocessing (default ``data/Processed``).
        epochs: training epochs for both runs; None lets training pick (short on demo data).
        device: ``auto`` | ``cpu`` | ``cuda``.
        method: CAM method for interpretation.
        n_overlays: CAM overlays saved per run.
        n_boot: bootstrap resamples behind every 95% interval.
        extra_train_args: passed verbatim to both training scripts.
        overwrite: retrain a run whose recorded settings or data differ from the requested
            ones (without it the pipeline refuses and names the difference).
        seed: training seed of a single-seed study, and the seed of every bootstrap.
        seeds: training seeds; None or one seed = the single-seed layout with ``seed``;
            several = every run once per seed as ``<run>-s<seed>`` (each run's own evaluation
            and interpretation bootstrap use its seed; the comparison over seeds uses ``seed``).
        demo_n: first make a demo dataset of this many images in ``data_dir`` (the RSNA-size
            profile, :mod:`pneumocam.pipeline_profiles`); None: no such stage.
        profile: the profile's name, recorded in the timing file.
    """

    data_dir: Path | None = None
    processed_dir: Path | None = None
    epochs: int | None = None
    device: str = "auto"
    method: str = "cam"
    n_overlays: int = 32
    seed: int = 0
    n_boot: int = 1000
    extra_train_args: list[str] = field(default_factory=list)
    overwrite: bool = False
    seeds: list[int] | None = None
    demo_n: int | None = None
    profile: str = "default"

    def training_seeds(self) -> list[int]:
        """The seeds each run is trained with (``[seed]`` unless ``seeds`` is given)."""
        return check_seeds(self.seeds) if self.seeds else [self.seed]


# The scripts live in the checkout this package is installed from (editable install), which
# stays put when PNEUMOCAM_ROOT moves the outputs elsewhere.
_SCRIPTS_DIR = paths.code_root() / "scripts"


def _script(name: str) -> str:
    return str(_SCRIPTS_DIR / name)


def _shown(value: Any) -> str:
    return "default" if value is None else str(value)


@dataclass(frozen=True)
class Difference:
    """One setting (or ``data``) whose recorded value differs from the requested one."""

    name: str
    recorded: Any
    requested: Any

    def sides(self) -> tuple[str, str]:
        return (f"{self.name}={_shown(self.recorded)}", f"{self.name}={_shown(self.requested)}")


def _data_difference(recorded: DataIdentity, recorded_dir: Path | None, wanted: DataIdentity,
                     processed: Path) -> list[Difference]:
    if not recorded.differences(wanted) and recorded.known:
        return []
    return [Difference("data", f"{recorded.describe()} in {recorded_dir or '?'}",
                       f"{wanted.describe()} in {processed}")]


def training_differences(run: str, args: list[str], processed: Path,
                         identity: DataIdentity | None = None) -> list[Difference] | None:
    """How the run recorded in ``weights/<run>/config.json`` differs from what the training
    arguments ``args`` (script path first) would train on ``processed``.

    A setting the request leaves to its default (None) matches only a run that left it to the
    default too; an explicit one is compared with the run's resolved value.

    Returns:
        The differences (empty: the same run), or None when there is no readable config.json.
    """
    from .model import DEFAULT_ARCH
    from .train import _parse_pos_weight, build_arg_parser, config_from_args

    config = read_json_object(paths.run_files(run)["config"])
    if config is None:
        return None
    sampler = "original" if Path(args[0]).name == "train_original.py" else "balanced"
    requested = config_from_args(build_arg_parser(sampler).parse_args(args[1:]), sampler)
    arguments = config.get("arguments") if isinstance(config.get("arguments"), dict) else {}
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    diffs = []
    for name in TRAIN_SETTINGS:
        wanted = getattr(requested, name)
        if wanted is None:
            recorded = arguments.get(name)
        else:
            recorded = settings.get("pos_weight_setting" if name == "pos_weight" else name,
                                    arguments.get(name))
            if name == "pos_weight":
                wanted = _parse_pos_weight(wanted)
        if name == "arch":  # compared resolved: unset, and absent from old configs, is resnet18
            recorded = settings.get("arch") or arguments.get("arch") or DEFAULT_ARCH
            wanted = wanted or DEFAULT_ARCH
        if recorded != wanted:
            diffs.append(Difference(name, recorded, wanted))
    identity = identity or data_identity(processed)
    return diffs + _data_difference(run_data_identity(config), run_data_dir(config), identity,
                                    processed)


def _mismatch(run: str, diffs: list[Difference] | None, finished: bool) -> str:
    """What is wrong with the existing run, in one clause."""
    wdir = f"weights/{run}"
    if diffs is None:
        return f"{wdir} holds a run without a readable config.json (settings and data unknown)"
    if not diffs:
        return f"{wdir} holds an unfinished run with no last.pth to resume"
    state = "was trained" if finished else "(unfinished) was started"
    recorded = ", ".join(d.sides()[0] for d in diffs)
    requested = ", ".join(d.sides()[1] for d in diffs)
    return f"{wdir} {state} with {recorded}; this run asks {requested}"


def _training_args(config: PipelineConfig, run: str, processed: Path,
                   identity: DataIdentity | None = None, *, name: str | None = None,
                   seed: int | None = None) -> list[str] | None:
    """Arguments for one training run, or None when a run with these settings and this data
    is already finished.

    ``run`` (``original`` | ``balanced``) picks the script; ``name`` is the run name (default
    ``run``; ``<run>-s<seed>`` in a multi-seed study) and ``seed`` its seed (default
    ``config.seed``).

    Raises:
        ConfigError: the existing run (finished or not) differs from the requested one and
            ``config.overwrite`` is not set; the message names every difference.
    """
    from .run_state import existing_run_files

    name = name or run
    seed = config.seed if seed is None else seed
    files = paths.run_files(name)
    script = "train_original.py" if run == "original" else "train_balanced.py"
    args = [_script(script), "--data-dir", str(processed), "--run-name", name,
            "--device", config.device, "--seed", str(seed), "--n-boot", str(config.n_boot)]
    if config.epochs is not None:
        args += ["--epochs", str(config.epochs)]
    args += list(config.extra_train_args)
    if not existing_run_files(files):
        return args
    finished = files["eval"].is_file() and files["best"].is_file()
    diffs = training_differences(name, args, processed, identity)
    if diffs == [] and finished:
        print(f"=== train {name}: finished earlier with these settings and data "
              f"(metrics/{name}_eval.json); skipped", flush=True)
        return None
    if diffs == [] and files["last"].is_file():
        return args + ["--resume"]
    if not config.overwrite:
        raise ConfigError(f"{_mismatch(name, diffs, finished)}: pass --overwrite to retrain it "
                          "(its weights, metrics and figures are replaced), or rerun with the "
                          "recorded settings and data.")
    print(f"=== train {name}: {_mismatch(name, diffs, finished)}; retraining (--overwrite)",
          flush=True)
    return args + ["--overwrite"]


def _interpret_settings(config: PipelineConfig, seed: int | None = None) -> dict[str, Any]:
    return {"split": "test", "method": config.method, "n": config.n_overlays,
            "n_boot": config.n_boot, "seed": config.seed if seed is None else seed,
            "limit": None, "save_maps": True}


def interpretation_differences(run: str, requested: dict[str, Any],
                               identity: DataIdentity) -> list[str]:
    """Why ``metrics/<run>_localization.json`` is not the requested interpretation (empty: it
    is): missing, older than the run's best weights, other settings or other data."""
    from .interpret import output_paths

    path = output_paths(run)["localization_json"]
    best = paths.run_files(run)["best"]
    report = read_json_object(path)
    if report is None:
        return [f"no readable {path.name}"]
    reasons = []
    if best.is_file() and path.stat().st_mtime < best.stat().st_mtime:
        reasons.append("the weights are newer")
    recorded = report.get("config") if isinstance(report.get("config"), dict) else {}
    for name in INTERPRET_SETTINGS:
        if recorded.get(name) != requested[name]:
            reasons.append(f"{name}={_shown(recorded.get(name))} -> {_shown(requested[name])}")
    data = DataIdentity.from_dict(report.get("data_identity"))
    if not data.known or data.differences(identity):
        reasons.append(f"data {data.describe()} -> {identity.describe()}")
    return reasons


def _settings(config: PipelineConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()}


def _prepare_data(config: PipelineConfig, timer: PipelineTimer) -> Path:
    """The processed folder: the profile's demo dataset first when asked, then preprocessing."""
    from .preprocess import ensure_processed

    if config.demo_n is not None:
        if config.data_dir is None:
            raise ConfigError("demo_n needs data_dir: the folder the demo dataset is made in.")
        timer.run("make demo", [_script("make_demo_data.py"), "--out", str(config.data_dir),
                                "--n", str(config.demo_n), "--quiet"], probe=False)
    with timer.in_process("preprocess"):
        return ensure_processed(out_dir=config.processed_dir, data_dir=config.data_dir)


def run_pipeline(config: PipelineConfig) -> dict[str, Path]:
    """Run every stage that is not finished yet; return where the results are.

    Each stage's wall time and peak memory go to ``metrics/pipeline_timing.json``.
    """
    start = time.perf_counter()
    seeds = config.training_seeds()  # checked before any work
    timer = PipelineTimer(_settings(config))
    processed = _prepare_data(config, timer)
    identity = data_identity(processed)
    names = seed_runs(RUNS, seeds)
    # Decide every training before running any: a refusal must come before hours of work.
    train_args = {name: _training_args(config, run, processed, identity, name=name, seed=seed)
                  for seed, per_seed in names.items() for run, name in per_seed.items()}
    for name, args in train_args.items():
        if args is None:
            timer.skipped(f"train {name}", "finished earlier with these settings and data")
        else:
            timer.run(f"train {name}", args)
    compare = [_script("compare.py"), "--runs", *RUNS, "--n-boot", str(config.n_boot),
               "--seed", str(config.seed)]
    if len(seeds) > 1:
        # Interpret first: the comparison over seeds reads every run's localization table.
        _interpret_all(config, names, processed, identity, timer)
        timer.run("compare seeds", compare + ["--seeds", *map(str, seeds)], probe=False)
    else:
        timer.run("compare", compare, probe=False)
        _interpret_all(config, names, processed, identity, timer)
    timer.run("report", [_script("report.py")], probe=False)  # the offline page, from all above
    outputs = {
        "processed data": processed,
        "weights": paths.weights_dir(),
        "metrics tables": paths.metrics_dir(),
        "comparison table": paths.metrics_dir() / (
            "comparison_seeds.csv" if len(seeds) > 1 else "comparison.csv"),
        "comparison figure": paths.images_dir() / (
            "comparison_seeds.png" if len(seeds) > 1 else "comparison.png"),
        "training figures": paths.images_dir(),
        "CAM overlays": paths.images_dir() / "cam",
        "stage timing": timer.path,
        "report (open it)": paths.images_dir() / "index.html",
    }
    timer.write()
    timer.print_table()
    minutes = (time.perf_counter() - start) / 60
    print(f"\nStudy finished in {minutes:.1f} min. Results:")
    for name, path in outputs.items():
        print(f"  {name:<18} {path}")
    return outputs


def _interpret_all(config: PipelineConfig, names: dict[int, dict[str, str]], processed: Path,
                   identity: DataIdentity, timer: PipelineTimer) -> None:
    """Interpret every run of every seed on the test split, unless already up to date."""
    for seed, per_seed in names.items():
        for name in per_seed.values():
            reasons = interpretation_differences(name, _interpret_settings(config, seed), identity)
            if not reasons:
                print(f"=== interpret {name}: up to date; skipped (same settings and data)",
                      flush=True)
                timer.skipped(f"interpret {name}", "up to date with these settings and data")
                continue
            print(f"=== interpret {name}: rerun ({'; '.join(reasons)})", flush=True)
            timer.run(f"interpret {name}", [
                _script("interpret.py"), "--weights", str(paths.run_files(name)["best"]),
                "--data-dir", str(processed), "--method", config.method,
                "--n", str(config.n_overlays), "--device", config.device,
                "--n-boot", str(config.n_boot), "--seed", str(seed), "--save-maps", "--no-report",
            ])
