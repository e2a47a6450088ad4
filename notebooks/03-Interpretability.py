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
seeds = None  # e.g. [0, 1, 2]: the runs <run>-s<seed> of a multi-seed study (run_pipeline.py --seeds)
data_dir = None  # processed folder; None: each run's config.json data_dir, else data/Processed
split = "test"  # the split measured (thresholds always come from val)
method = "cam"  # cam | gradcam | gradcam++ | scorecam | eigencam | layercam | layercam-fused
n = 16  # single-image overlays per run (positives first, then negatives)
n_grid = 8  # examples per confusion-matrix grid
batch_size = 64
n_boot = 1000  # bootstrap resamples for the 95% intervals
sanity_images = 16  # images of the randomisation sanity check
device = "auto"  # auto | cpu | cuda
limit = None  # first `limit` images of each split (None: all)
save_maps = True  # metrics/<run>_maps.npy: raw maps of the whole split
n_compare = 6  # images in the side-by-side comparison
methods = "all"  # methods compared on the same split: "all" or e.g. "cam,gradcam,layercam"
slow_limit = 200  # images per split for Score-CAM (one forward pass per channel and image)

# %%
# Imports follow the parameters cell (papermill-style), hence the noqa.
from IPython.display import Image, Markdown, display  # noqa: E402

from pneumocam import paths  # noqa: E402
from pneumocam.interpret import available_runs, interpret_runs  # noqa: E402
from pneumocam.localization_comparison import (  # noqa: E402
    compare_maps,
    comparison_table,
    paired_table,
    run_pairs,
    save_comparison,
    summarize_comparison,
)
from pneumocam.sanity import sanity_cascade, sanity_table  # noqa: E402
from pneumocam.seed_comparison import seed_runs  # noqa: E402

if seeds:  # every run once per seed; one seed keeps the plain names
    runs = [name for per_seed in seed_runs(runs, seeds).values() for name in per_seed.values()]
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
# ## One map by hand
#
# Before the package's maps, the method itself on one image: the first positive image (with
# boxes) of the split, scored by the last run listed. A forward hook on `model.layer4` catches
# the feature maps `A` of shape (1, 512, h, w) (7 x 7 for a 224 input) during the ordinary
# forward pass; `einsum("chw,c->hw", A[0], fc.weight[0])` weighs each of the 512 maps by its fc
# weight and sums them; bilinear upsampling (`align_corners=False`) brings the h x w map to the
# input size. Two things to check in the output: the hand-made map equals
# `pneumocam.cam.compute_cams(model, x, method="cam").raw[0]` (the maximum absolute difference
# is printed and asserted below 1e-4), and the spatial mean of the h x w map plus `fc.bias` is
# the model's logit, because global average pooling and the linear layer commute. Red is
# evidence for pneumonia, blue against (the colour scale is symmetric around 0). Saved as
# `images/cam/<run>_cam_by_hand.png`.

# %%
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from pneumocam.cam import compute_cams  # noqa: E402
from pneumocam.plots import new_figure, save_figure  # noqa: E402
from pneumocam.predict import load_run, normalize_images  # noqa: E402
from pneumocam.processed import load_arrays, read_manifest  # noqa: E402

hand_run = present[-1]
folder = reports[hand_run]["data_dir"]  # the processed folder this run was interpreted on
loaded = load_run(reports[hand_run]["weights"], device=device, data_dir=folder)
model = loaded.model  # eval mode, on loaded.device
rows = read_manifest(folder)
example = rows[(rows["split"] == split) & (rows["boxes"].str.len() > 0)].iloc[0]
image = load_arrays(folder, [example["array_file"]])  # uint8 (1, H, W)
x = normalize_images(image, loaded.mean, loaded.std).to(loaded.device)  # (1, 1, H, W), as trained

caught = {}
hook = model.layer4.register_forward_hook(lambda module, inputs, output: caught.update(A=output))
with torch.no_grad():
    logit = model(x)[0, 0]
    hook.remove()
    features = caught["A"]  # (1, 512, h, w)
    cam = torch.einsum("chw,c->hw", features[0], model.fc.weight[0])  # (h, w), logit units
    cam_up = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear",
                           align_corners=False)[0, 0]  # (H, W)
package_cam = compute_cams(model, x, method="cam").raw[0]  # (H, W), on the CPU
cam, cam_up, logit = cam.cpu(), cam_up.cpu(), logit.cpu()
difference = (cam_up - package_cam).abs().max().item()
print(f"{hand_run}, {example['patientId']}: features {tuple(features.shape)}, map "
      f"{tuple(cam.shape)} -> {tuple(cam_up.shape)}")
print(f"max |by hand - compute_cams| = {difference:.2e}")
assert np.allclose(cam_up.numpy(), package_cam.numpy(), atol=1e-4)
print(f"mean of the {cam.shape[0]}x{cam.shape[1]} map + fc.bias = "
      f"{(cam.mean() + model.fc.bias[0].cpu()).item():.5f}; logit = {logit.item():.5f}")

limit_abs = float(package_cam.abs().max()) or 1.0  # one symmetric scale for the three maps
fig = new_figure((12.0, 3.4), demo=loaded.demo)
ax_image, ax_low, ax_hand, ax_package = fig.subplots(1, 4)
ax_image.imshow(image[0], cmap="gray", vmin=0, vmax=255)
for bx, by, bw, bh in example["boxes"]:
    ax_image.add_patch(Rectangle((bx - 0.5, by - 0.5), bw, bh, fill=False, edgecolor="cyan"))
ax_image.set_title(f"{example['patientId'][:8]} ({split}), boxes", fontsize=9)
ax_low.imshow(cam, cmap="RdBu_r", vmin=-limit_abs, vmax=limit_abs)
ax_low.set_title(f"by hand: {cam.shape[0]}x{cam.shape[1]} CAM", fontsize=9)
ax_hand.imshow(cam_up, cmap="RdBu_r", vmin=-limit_abs, vmax=limit_abs)
ax_hand.set_title("by hand: upsampled (bilinear)", fontsize=9)
shown = ax_package.imshow(package_cam, cmap="RdBu_r", vmin=-limit_abs, vmax=limit_abs)
ax_package.set_title(f"compute_cams raw (max diff {difference:.1e})", fontsize=9)
for ax in (ax_image, ax_low, ax_hand, ax_package):
    ax.set_axis_off()
fig.colorbar(shown, ax=ax_package, shrink=0.8, label="logit units")
fig.suptitle(f"Class activation map of {hand_run}, by hand and by the package "
             f"(logit {logit.item():.3f})", fontsize=10)
by_hand_png = save_figure(fig, paths.images_dir() / "cam" / f"{hand_run}_cam_by_hand.png")
display(Image(filename=by_hand_png))

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
    for grid, what in (("grid_tp", "true positives"), ("grid_fp", "false positives")):
        if grid in reports[run]["outputs"]:
            display(Image(filename=reports[run]["outputs"][grid]))
        else:  # an empty cell of the confusion matrix gets no grid
            print(f"{run}: no {what} in the {split} split at the operating threshold: no grid.")

# %% [markdown]
# ## Original vs balanced on the same images
#
# The positives both models are surest of, each model's map beside the other's (shown when both
# runs exist).

# %%
if available.side_by_side:
    side_by_side = compare_maps({run: paths.run_files(run)["best"] for run in present},
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
#
# Every comparison is made on the same images, so it is tested paired: the second table holds,
# per metric, each run minus each baseline and run minus run (`a - b`, matched by patientId), the
# mean per-image difference with a paired bootstrap 95% interval (the same resampled images on
# both sides) and, for the pointing game, an exact McNemar p-value. `verdict` reads the interval:
# above 0 "beats", below 0 "is beaten by", around 0 "cannot be told apart from". Saved to
# `metrics/localization_comparison_paired.csv`.

# %%
pairs = run_pairs(reports)  # run minus run, from the per-image CSVs
saved = save_comparison(reports, pairs=pairs)
display(comparison_table(reports).set_index("name").round(3))
display(paired_table(reports, pairs).round(4))
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
display(sanity_cascade(paths.run_files(present[-1])["best"], data_dir=data_dir,
                       split=split, n_images=sanity_images, method=method, device=device,
                       batch_size=batch_size).round(3))

# %% [markdown]
# ## Every method on the same images
#
# The maps above come from one method. Here every method measures the last run listed on the
# same split, as `python scripts/interpret.py --method all` does: classic CAM, Grad-CAM,
# Grad-CAM++, Eigen-CAM and Score-CAM on `layer4`, LayerCAM on `layer3` (twice the resolution of
# a standard `layer4`) and fused over `layer3` and `layer4`. A run trained with
# `--arch resnet18-os16` has a 14x14 `layer4` at 224 px instead of 7x7. Per method: pointing
# game, mass in boxes, IoU and the RSNA metric of its boxes with 95% intervals, and the paired
# difference to the best image-free baseline of each metric (`_difference`, `_verdict`);
# Score-CAM runs on a class-stratified subset of `slow_limit` images of each split when a split
# is larger (`subset`). Saved to `metrics/<run>_methods.{csv,json}`, `images/<run>/methods.png` and
# `images/<run>/methods_maps.png` (the same positives under the best three methods).

# %%
import pandas as pd  # noqa: E402

from pneumocam.method_comparison import MethodsConfig, compare_methods, parse_methods  # noqa: E402

methods_run = present[-1]
by_method = compare_methods(MethodsConfig(
    weights=paths.run_files(methods_run)["best"], methods=parse_methods(methods),
    data_dir=data_dir, split=split, batch_size=batch_size, device=device, n_boot=n_boot,
    limit=limit, slow_limit=slow_limit))
method_table = pd.DataFrame(by_method["rows"]).set_index("method")
display(Markdown(f"**{methods_run}** ({by_method['arch']}), {split} split, maps per second on "
                 f"{by_method['device']}; best first: {', '.join(by_method['ranking'])}"))
display(method_table[["feature_map", "n_images", "pointing_game", "pointing_game_difference",
                      "pointing_game_verdict", "mass_in_boxes", "iou", "iou_difference",
                      "rsna_metric", "rsna_metric_difference", "maps_per_second", "subset"]]
        .round(3))
display(Image(filename=by_method["outputs"]["figure"]))
display(Image(filename=by_method["outputs"]["maps_figure"]))

# %% [markdown]
# ## Conclusions
#
# Written by `pneumocam.localization_comparison.summarize_comparison` from the numbers above (and
# saved to `metrics/localization_comparison_conclusions.txt`), so they change when the numbers do.

# %%
print(summarize_comparison(reports, pairs))

# %% [markdown]
# ## The study's offline report and the CAM gallery
#
# `python scripts/report.py` in one call: `images/index.html` shows the whole study, and its
# gallery (`images/report/gallery.html`) every image of the interpreted split with its map, for
# every run whose maps were saved (`interpret.py --save-maps`, which the pipeline passes), with
# filters by confusion cell, label, view and pointing result, and a detail view per image.

# %%
from pneumocam.report_site import write_site  # noqa: E402

print(f"open {write_site()} in a browser")
