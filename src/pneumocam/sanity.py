"""The model-parameter randomisation sanity check (Adebayo et al., 2018) for CAM methods.

A map worth reading as an explanation depends on what the model learned. The check compares each
image's raw map from the trained model with the map from the same architecture whose weights are
re-initialised (:func:`randomized_copy`), by the Spearman rank correlation of the two maps
(:func:`spearman_rows`: rank-based, hence scale-free; signed values for CAM). A method passes when
the mean |rho| is below :data:`SANITY_THRESHOLD`.

- :func:`randomization_sanity_check`: the check on a batch of normalised images (the
  interpretation stage runs it on a split's first images), optionally cascading: stages
  re-initialised cumulatively from the top (``fc``, ``layer4`` ... ``conv1``, :data:`CASCADE_STAGES`).
- :func:`sanity_cascade`: the cascading check for a trained run on a split's positives, as a table.
- :func:`sanity_table`: the verdicts of several runs' localization reports, one row per run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from .cam import compute_cams
from .errors import ProcessedDataError
from .predict import load_run, normalize_images
from .processed import check_run_data, load_arrays, read_manifest
from .split_maps import manifest_boxes, positives_with_boxes, resolve_data_folder

#: Adebayo et al. (2018) style stages, top (output) to bottom (input), randomised cumulatively.
CASCADE_STAGES = (("fc",), ("layer4",), ("layer3",), ("layer2",), ("layer1",), ("conv1", "bn1"))
SANITY_THRESHOLD = 0.5  #: a method passes when the mean |Spearman rho| to random-model maps is below


def randomized_copy(model: nn.Module, seed: int = 0, stages: tuple[str, ...] | None = None) -> nn.Module:
    """A deep copy of ``model`` with re-initialised weights (torchvision's ResNet init).

    Args:
        stages: top-level module names to re-initialise (e.g. ``("fc", "layer4")``); None = all.
            Convolutions get Kaiming-normal (fan_out, ReLU), batch norms weight 1 / bias 0 and
            fresh running statistics, linear layers PyTorch's default. The global RNG state
            is left untouched.
    """
    clone = copy.deepcopy(model)
    device = next(clone.parameters()).device
    names = stages if stages is not None else tuple(n for n, _ in clone.named_children())
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            for module in getattr(clone, name).modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, (nn.BatchNorm2d, nn.Linear)):
                    module.reset_parameters()
    return clone


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row pair of (N, ...) arrays; nan where a row is constant."""
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def _rho_summary(rho: np.ndarray) -> dict:
    return {
        "mean_rho": float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"),
        "median_rho": float(np.nanmedian(rho)) if np.isfinite(rho).any() else float("nan"),
        "mean_abs_rho": float(np.nanmean(np.abs(rho))) if np.isfinite(rho).any() else float("nan"),
    }


def randomization_sanity_check(
    model: nn.Module,
    images: torch.Tensor,
    method: str = "cam",
    seed: int = 0,
    cascading: bool = False,
    batch_size: int = 64,
) -> dict:
    """Model-parameter randomisation test (Adebayo et al., 2018).

    Maps of the trained model are compared with maps of the same architecture whose weights
    are re-initialised (:func:`randomized_copy`), by the Spearman rank correlation of the raw
    maps per image (signed values for CAM; rank-based, hence scale-free). A method worth
    trusting depends on the learned weights, so the correlation should be low.

    Args:
        images: (N, 1, H, W) normalised float images.
        cascading: also randomise cumulatively from the top (``fc``, ``layer4``, ... ``conv1``)
            and report the correlation after each stage.

    Returns:
        ``{"method", "seed", "n_images", "mean_rho", "median_rho", "mean_abs_rho",
        "per_image_rho": [...], "threshold": 0.5, "passed": mean_abs_rho < 0.5}`` plus
        ``"cascading": [{"randomized": [stage names], "mean_rho", "median_rho",
        "mean_abs_rho"}, ...]`` when requested. ``passed`` is False when no rho is defined.
    """
    trained = compute_cams(model, images, method, batch_size).raw.numpy()
    random_maps = compute_cams(randomized_copy(model, seed), images, method, batch_size).raw.numpy()
    rho = spearman_rows(trained, random_maps)
    summary = _rho_summary(rho)
    result = {
        "method": method,
        "seed": seed,
        "n_images": int(len(rho)),
        **summary,
        "per_image_rho": [float(r) for r in rho],
        "threshold": SANITY_THRESHOLD,
        "passed": bool(summary["mean_abs_rho"] < SANITY_THRESHOLD),
    }
    if cascading:
        steps, done = [], ()
        for stage in CASCADE_STAGES:
            done = done + stage
            maps = compute_cams(randomized_copy(model, seed, done), images, method, batch_size).raw
            steps.append({"randomized": list(done), **_rho_summary(spearman_rows(trained, maps.numpy()))})
        result["cascading"] = steps
    return result


def sanity_cascade(weights: str | Path, data_dir: str | Path | None = None, split: str = "test",
                   n_images: int = 16, method: str = "cam", device: str = "auto", seed: int = 0,
                   batch_size: int = 64) -> pd.DataFrame:
    """Cascading randomisation (Adebayo et al., 2018): ``fc`` first, then ``layer4`` ... ``conv1``.

    Uses the first ``n_images`` positives of ``split`` (with boxes). One row per step:
    ``randomized`` (stages re-initialised so far, top down), ``mean_rho``, ``median_rho``,
    ``mean_abs_rho`` of the raw maps against the trained model's. Maps that stay correlated
    while the weights under them are destroyed reflect the input, not what the model learned.
    """
    run = load_run(weights, device, data_dir)
    folder = resolve_data_folder(data_dir, run)
    check_run_data(run.config, folder, run.weights)
    manifest = read_manifest(folder)
    rows = manifest[manifest["split"] == split]
    rows = rows[positives_with_boxes(rows["label"], manifest_boxes(rows))].head(max(1, int(n_images)))
    if rows.empty:
        raise ProcessedDataError(f"{folder}: no positive image with a box in the {split!r} split.")
    images = load_arrays(folder, rows["array_file"])
    result = randomization_sanity_check(run.model, normalize_images(images, run.mean, run.std),
                                        method=method, seed=seed, cascading=True,
                                        batch_size=batch_size)
    table = pd.DataFrame(result["cascading"])
    table["randomized"] = ["+".join(r) for r in table["randomized"]]
    first = {"randomized": "(all, at once)", "mean_rho": result["mean_rho"],
             "median_rho": result["median_rho"], "mean_abs_rho": result["mean_abs_rho"]}
    return pd.concat([table, pd.DataFrame([first])], ignore_index=True)


def sanity_table(reports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: the randomisation sanity check's numbers and verdict."""
    rows = []
    for run, rep in reports.items():
        s = rep.get("sanity_check") or {}
        rows.append({"run": run, "method": s.get("method"), "n_images": s.get("n_images"),
                     "mean_rho": s.get("mean_rho"), "mean_abs_rho": s.get("mean_abs_rho"),
                     "threshold": s.get("threshold"), "passed": s.get("passed")})
    return pd.DataFrame(rows)
