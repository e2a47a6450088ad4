"""Named settings of the one-command study (``run_pipeline.py --profile``).

- ``default``: today's study: the real data when present, else the 2,000-image demo, and the
  training defaults for that data (a short schedule on the demo).
- ``full``: the study at the size of RSNA stage 2: a demo dataset of :data:`RSNA_N` images (or
  ``--demo-n``) made in its own folder (``data/demo-n<N>``) and preprocessed into its own
  (``data/Processed-demo-n<N>``), so the default demo stays as it is; both trainings with the
  real-data defaults (:data:`pneumocam.train.FULL_EPOCHS` epochs, batch
  :data:`pneumocam.train.GPU_BATCH` on CUDA), evaluation, interpretation of both on the test
  split, comparison. The demo generation is timed as its own stage and left out of the total.
"""

from __future__ import annotations

import dataclasses

from . import paths
from .errors import ConfigError
from .pipeline import PipelineConfig

PROFILES = ("default", "full")
#: Images (= patients) of RSNA stage 2 train.
RSNA_N = 26_684


def _uses_cuda(device: str) -> bool:
    if device == "cpu":
        return False
    import torch

    return device == "cuda" or torch.cuda.is_available()


def apply_profile(config: PipelineConfig, profile: str, demo_n: int | None = None) -> PipelineConfig:
    """``config`` with the settings of ``profile``; what ``config`` sets explicitly is kept
    (``epochs``, ``processed_dir``).

    Args:
        demo_n: images of the ``full`` profile's demo (default :data:`RSNA_N`); a small value
            gives the same stages at a size a CPU finishes in minutes.

    Raises:
        ConfigError: an unknown profile, ``demo_n`` without the ``full`` profile, or a
            ``data_dir`` with it (the profile makes its own data).
    """
    if profile not in PROFILES:
        raise ConfigError(f"--profile {profile!r}: choose one of {', '.join(PROFILES)}.")
    if profile == "default":
        if demo_n is not None:
            raise ConfigError("--demo-n sets the size of the full profile's demo: pass it with "
                              "--profile full.")
        return config
    if config.data_dir is not None:
        raise ConfigError("--profile full makes its own demo dataset: drop --data-dir (or run "
                          "without --profile to use that folder).")
    n = RSNA_N if demo_n is None else int(demo_n)
    if n < 20:
        raise ConfigError(f"--demo-n {n}: expected at least 20 images (each split needs both "
                          "classes).")
    from .train import FULL_EPOCHS, GPU_BATCH

    extra = list(config.extra_train_args)
    if _uses_cuda(config.device) and "--batch-size" not in extra:
        extra += ["--batch-size", str(GPU_BATCH)]  # the demo default is the small CPU batch
    return dataclasses.replace(
        config, profile=profile, demo_n=n, data_dir=paths.data_dir() / f"demo-n{n}",
        processed_dir=config.processed_dir or paths.data_dir() / f"Processed-demo-n{n}",
        epochs=FULL_EPOCHS if config.epochs is None else config.epochs, extra_train_args=extra)
