# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Interpretability: where do the two models look?
#
# Notebooks 02 trained the same ResNet-18 twice: on the imbalanced data as it comes
# (**original**, 22.5% positives) and with a `WeightedRandomSampler` that shows both classes
# equally often (**balanced**). Both end in `layer4 → global average pooling → fc = Linear(512, 1)`,
# so the logit is the spatial mean of a **class activation map** (CAM; Zhou et al., 2016):
# `CAM = Σ_k w_k A_k`, the fc weights applied to layer4's 512 feature maps, upsampled to the
# radiograph. Positive values are evidence *for* pneumonia.
#
# The RSNA radiologists drew boxes around the opacities, so the maps can be *measured*, not just
# looked at. On the positive images of the test split this notebook reports, each with a 95%
# bootstrap interval:
#
# - **pointing game**: does the map's maximum fall inside a box?
# - **mass in boxes**: the share of the map's positive evidence inside the boxes;
# - **IoU** of the thresholded map with the boxes (threshold chosen on the validation split);
#
# beside three baselines that never look at the image (the single most-boxed pixel of the
# training set, the mean training box mask, uniform noise). A model whose maps do not beat
# "always point at the usual place" has not shown that it looks at the opacity.
#
# It also turns each map into boxes (weakly supervised detection) scored with the challenge's
# own metric, runs the **model-parameter randomisation test** (Adebayo et al., 2018: maps that
# survive random weights explain the input, not the model), and ends with conclusions that are
# built from the numbers computed here. It runs the same package call as
# `python scripts/interpret.py --weights weights/<run>/best.pth`. It interprets the runs that
# exist (after `python scripts/train_balanced.py` alone, just `balanced`), says which command adds
# a missing one, and shows the side-by-side sections only when there are two.

# %% tags=["parameters"]
runs = ["original", "balanced"]  # weights/<run>/best.pth for each that exists
data_dir = None  # processed folder; None: each run's config.json data_dir, else data/Processed
split = "test"  # the split measured (thresholds always come from val)
method = "cam"  # cam | gradcam | gradcam++ | scorecam | eigencam
n = 16  # single-image overlays per run (positives first, then negatives)
n_grid = 8  # examples per confusion-matrix grid
batch_size = 64
n_boot = 1000  # bootstrap resamples for the 95% intervals
sanity_images = 16  # images of the randomisation sanity check
device = "auto"  # auto | cpu | cuda
limit = None  # first `limit` images of each split (None: all)
save_maps = True  # metrics/<run>_maps.npy: raw maps of the whole split
n_compare = 6  # images in the side-by-side comparison

# %%
# Imports follow the parameters cell (papermill-style), hence the noqa.
from IPython.display import Image, Markdown, display  # noqa: E402

from pneumocam import paths  # noqa: E402
from pneumocam.interpret import available_runs, interpret_runs  # noqa: E402
from pneumocam.localization_comparison import (  # noqa: E402
    compare_maps,
    comparison_table,
    save_comparison,
    summarize_comparison,
)
from pneumocam.sanity import sanity_cascade, sanity_table  # noqa: E402

available = available_runs(runs)  # the trained ones; a line for each missing one
for note in available.notes():
    print(note)
present = available.present
reports = interpret_runs(present, data_dir=data_dir, split=split, method=method, n=n,
                         n_grid=n_grid, batch_size=batch_size, n_boot=n_boot,
                         sanity_images=sanity_images, device=device, limit=limit,
                         save_maps=save_maps)
sources = {run: rep["data_source"].get("kind") for run, rep in reports.items()}
print("data source per run:", sources)
if any(rep["synthetic_demo"] for rep in reports.values()):
    display(Markdown("**SYNTHETIC DEMO DATA.** These runs were trained and measured on the "
                     "generated demo dataset: every number and map below only shows that the "
                     "pipeline works, and says nothing about pneumonia."))

# %% [markdown]
# ## The maps, image by image
#
# For each run: the chosen overlays (`images/cam/<run>/<patientId>.png`: positives the model is
# surest of, then its most confident false alarms), the radiologists' boxes in cyan and the map's
# peak as a green cross. The title says whether the peak fell inside a box.

# %%
for run in present:
    display(Markdown(f"### {run}"))
    display(Image(filename=reports[run]["overlays"]["files"][0]))

# %% [markdown]
# The same at a glance: the most confident examples of each cell of the confusion matrix at the
# run's operating threshold (Youden's J on validation, from `metrics/<run>_eval.json`). True
# positives show where the model finds pneumonia; false positives show what it mistakes for it.

# %%
for run in present:
    display(Image(filename=reports[run]["outputs"]["grid_tp"]))
    display(Image(filename=reports[run]["outputs"]["grid_fp"]))

# %% [markdown]
# ## Original vs balanced on the same images
#
# The positives both models are surest of, each model's map beside the other's (shown when both
# runs exist).

# %%
if available.side_by_side:
    side_by_side = compare_maps({run: paths.run_weights_dir(run) / "best.pth" for run in present},
                                data_dir=data_dir, n=n_compare, method=method, device=device,
                                batch_size=batch_size)
    display(Image(filename=side_by_side["figure"]))
else:
    print(f"only {present[0]} is trained: no side-by-side. " + " ".join(available.notes()))

# %% [markdown]
# ## Localization, measured
#
# One row per run, then the image-free baselines (identical for both runs: they depend only on
# the boxes). `_lo`/`_hi` are the 95% bootstrap interval over the positive images.
# `rsna_metric` scores the boxes cut from the maps (map threshold chosen on validation; no boxes
# on images the classifier calls negative) with the challenge's mean average precision over IoU
# 0.40–0.75. Saved to `metrics/localization_comparison.csv` and
# `images/cam/localization_comparison.png`.

# %%
saved = save_comparison(reports)
display(comparison_table(reports).set_index("name").round(3))
display(Image(filename=saved["figure"]))

# %% [markdown]
# ## Sanity check: do the maps depend on what the model learned?
#
# The maps of each trained model are compared with the maps of the same architecture with
# re-initialised weights (Spearman rank correlation of the raw maps, per image). The check passes
# when the mean |ρ| is below 0.5. The cascade re-initialises the layers one by one from the top
# (fc, then layer4, ... conv1): correlations should drop at once, not only at the end.

# %%
display(sanity_table(reports))
display(sanity_cascade(paths.run_weights_dir(present[-1]) / "best.pth", data_dir=data_dir,
                       split=split, n_images=sanity_images, method=method, device=device,
                       batch_size=batch_size).round(3))

# %% [markdown]
# ## Conclusions
#
# Written by `pneumocam.localization_comparison.summarize_comparison` from the numbers above (and
# saved to `metrics/localization_comparison_conclusions.txt`), so they change when the numbers do.

# %%
print(summarize_comparison(reports))
