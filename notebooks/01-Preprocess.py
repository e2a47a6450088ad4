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
# # 01 · Preprocess: RSNA DICOMs → `data/Processed`
#
# The RSNA Pneumonia Detection Challenge ships 26,684 frontal chest radiographs (stage 2 train)
# as 1024×1024 8-bit JPEG-compressed DICOMs, with `stage_2_train_labels.csv` holding one row per
# radiologist box (6,012 positive patients, 9,555 boxes) and `stage_2_detailed_class_info.csv`
# a finer class per patient.
#
# This notebook runs the same package call as `python scripts/preprocess.py`:
#
# 1. read the labels into one record per patient (`pneumocam.rsna`);
# 2. split the **patients** into train/val/test, stratified by label, seeded;
# 3. decode every DICOM to a `size × size` uint8 array (dark lungs, padded to a square, area
#    resize) in parallel, writing `data/Processed/{split}/{label}/<patientId>.npy`;
# 4. write `manifest.csv` (boxes in output pixels), `stats.json` (train mean/std, counts, data
#    source, versions) and `skipped.csv` (every file that could not be used, with the reason).
#
# Without the real files in `data/rsna-pneumonia-detection-challenge/`, it generates and uses the
# **synthetic demo dataset** (`data/demo/`); every output and figure then says so. A run that is
# interrupted resumes where it stopped when executed again.

# %% tags=["parameters"]
data_dir = None  # RSNA-layout folder; None: the real data if present, else the demo dataset
out_dir = None  # None: data/Processed
n_demo = None  # demo images to generate on first use (None: pneumocam.demo.DEMO_DEFAULT_N)
size = 224  # side of the output arrays
workers = None  # decoding processes (None: all cores)
overwrite = False  # replace outputs from another source or with other parameters
n_samples = 8  # images in the sample figure

# %%
# Imports follow the parameters cell (papermill-style), hence the noqa.
from pathlib import Path  # noqa: E402

from IPython.display import Image, display  # noqa: E402

from pneumocam.plots_data import data_report  # noqa: E402
from pneumocam.preprocess import PreprocessConfig, run_preprocess  # noqa: E402

config = PreprocessConfig(
    data_dir=Path(data_dir) if data_dir else None,
    out_dir=Path(out_dir) if out_dir else None,
    size=size, workers=workers, overwrite=overwrite, n_demo=n_demo,
)
summary = run_preprocess(config)
display(summary)

# %% [markdown]
# ## Where the data came from, and what was set aside
#
# `stats.json` names the source (`demo` for the synthetic dataset, `rsna` for the real files)
# and holds the training-split pixel mean and standard deviation on the [0, 1] scale that the
# training notebooks normalise with. `skipped.csv` lists unreadable DICOMs, labels without a
# DICOM and DICOMs without labels.

# %%
report = data_report(summary.out_dir, n_samples=n_samples)
stats = report.stats
print(f"source: {stats['source']['kind']} data from {stats['source']['path']}")
if report.demo:
    print("SYNTHETIC DEMO DATA: every figure below carries the note 'synthetic demo data'.")
print(f"train mean {stats['mean']:.4f}, std {stats['std']:.4f} ({stats['size']} x {stats['size']})")
print(f"{len(report.skipped)} file(s) set aside")
display(report.skipped.head(10))

# %% [markdown]
# ## One DICOM, step by step
#
# What preprocessing does to every file, done here on one positive training image with the
# package's own building blocks (`pneumocam.dicom`; its module docstring has the details):
#
# 1. **stored pixels**: the values pydicom decodes (`ds.pixel_array`), before any transform;
# 2. **modality + VOI (window) transform**: `read_dicom` applies the Modality LUT or Rescale
#    Slope/Intercept, then the VOI LUT or the window (else the full *Bits Stored* range), inverts
#    MONOCHROME1, and returns float32 in [0, 1] with dark lungs. RSNA files (and the demo's) carry
#    no rescale and no window, so here this is the stored value / 255 (the difference printed is
#    float rounding); a CT-like file with a window, or a MONOCHROME1 one, would differ;
# 3. **the stored array**: `load_dicom_resized` pads to a centred square with black, area-resizes
#    to `size` and rounds to uint8; for 8-bit MONOCHROME2 JPEG Baseline files like these it
#    decodes the JPEG at a reduced size (the *fast path*), within a grey level of the full decode.
#    Its `geometry` maps the radiologists' boxes between DICOM pixels and output pixels (the
#    `boxes` of `manifest.csv`, mapped back here for the middle panel).
#
# Look at the header fields, at the dtype and range at each step, and at the boxes: they still
# frame the opacity after resizing, because pixels and boxes go through the same geometry. The
# figure is saved as `images/preprocess/one_dicom.png`.

# %%
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from pneumocam.dicom import load_dicom_resized, read_dicom, square_and_resize, to_uint8  # noqa: E402
from pneumocam.plots import new_figure, save_figure  # noqa: E402
from pneumocam.processed import read_manifest  # noqa: E402

manifest = read_manifest(summary.out_dir)
example = manifest[(manifest["split"] == "train") & (manifest["boxes"].str.len() > 0)].iloc[0]
path = Path(example["source_file"])

ds = pydicom.dcmread(path)
stored = ds.pixel_array  # decoded, no value transform
full = read_dicom(path)  # modality + VOI transform: float32 (Rows, Columns) in [0, 1]
small = load_dicom_resized(path, size=stats["size"], fast=stats["parameters"]["fast"])
array = np.load(summary.out_dir / example["array_file"])  # what preprocessing wrote
assert np.array_equal(small.image, array)  # the same function made it

meta = full.meta
top = 2 ** meta.bits_stored - 1  # the largest stored value
full_small = to_uint8(square_and_resize(full.image, stats["size"])[0])  # full decode, resized
boxes_dicom = small.geometry.boxes_to_original(example["boxes"])
print(f"{path.name}: {meta.rows} x {meta.columns} pixels, {meta.bits_stored}-bit "
      f"{meta.photometric}, {ds.file_meta.TransferSyntaxUID.name} ({meta.transfer_syntax}), "
      f"view {meta.view_position}")
print(f"stored pixels:        {stored.dtype} {stored.shape}, {stored.min()}..{stored.max()}")
print(f"after modality + VOI: {full.image.dtype} {full.image.shape}, "
      f"{full.image.min():.3f}..{full.image.max():.3f}; "
      f"max |image - stored / {top}| = {np.abs(full.image - stored / top).max():.2g}")
print(f"stored array:         {array.dtype} {array.shape}, {array.min()}..{array.max()}; "
      f"fast path {small.fast_path}, mean |fast - full decode| = "
      f"{np.abs(full_small.astype(float) - array).mean():.2f} grey levels")
print(f"geometry: {small.geometry}")
print("boxes [x, y, w, h] in DICOM pixels: ", np.round(boxes_dicom, 1).tolist())
print("boxes [x, y, w, h] in output pixels:", example["boxes"])

fig = new_figure((11.0, 4.0), demo=report.demo)
ax_stored, ax_voi, ax_out = fig.subplots(1, 3)
ax_stored.imshow(stored, cmap="gray", vmin=0, vmax=top)
ax_stored.set_title(f"stored pixels ({stored.dtype}, {stored.shape[0]}x{stored.shape[1]})", fontsize=9)
ax_voi.imshow(full.image, cmap="gray", vmin=0, vmax=1)
ax_voi.set_title("after modality + VOI (float32, [0, 1]) + boxes", fontsize=9)
ax_out.imshow(array, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
ax_out.set_title(f"stored array ({array.dtype}, {array.shape[0]}x{array.shape[1]}) + boxes", fontsize=9)
# Boxes use pixel-edge coordinates; imshow puts pixel centres on integers, hence the -0.5.
for x, y, w, h in boxes_dicom:
    ax_voi.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="red", lw=1.2))
for x, y, w, h in example["boxes"]:
    ax_out.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="red", lw=1.2))
for ax in (ax_stored, ax_voi, ax_out):
    ax.set_axis_off()
fig.suptitle(f"One DICOM through preprocessing: {example['patientId'][:8]} "
             f"({meta.view_position}, label {example['label']})", fontsize=10)
one_dicom_png = save_figure(fig, report.saved["samples.png"].parent / "one_dicom.png")
display(Image(filename=one_dicom_png))

# %% [markdown]
# ## Split and class counts
#
# Every patient is in exactly one split, and each split keeps the overall share of positives
# (about 22.5% on the real data). The RSNA classes split the negatives into *Normal* and
# *No Lung Opacity / Not Normal*.

# %%
display(report.split_counts)

# %% [markdown]
# ## View position: the shortcut
#
# On the real stage 2 data, AP (bedside) films are 45.6% of images with 38.3% positive, PA
# films 54.4% with 9.3% positive, so view position alone reaches ROC AUC ≈ 0.71. Any model has
# to beat that within each view to show it looks at the lungs.

# %%
display(report.view_positions)

# %%
display(Image(filename=report.saved["counts.png"]))  # the saved PNG, exactly as on disk

# %% [markdown]
# ## Sample images with the radiologists' boxes
#
# Boxes are stored in output pixels (after padding to a square and resizing), so they overlay
# the arrays directly; the CAM notebook measures localization against them.

# %%
display(Image(filename=report.saved["samples.png"]))
display(report.saved)  # every figure and table this notebook wrote

# %% [markdown]
# ## Box geometry beside the real RSNA boxes, and the image-free baselines
#
# Where the boxes are and how big they are decides how often a map that ignores the image
# lands in a box: the best fixed point and the mean-box prior are the localization baselines
# the CAM notebook compares every map against. The table puts this dataset's boxes (in
# 1024-px units) beside the real stage 2 training boxes; `ratio` near 1 means the same shape.
# On the real data the best fixed point hits a box in 57.6% of positive test images and the
# mean-box prior reaches IoU 0.294. Both are saved under `metrics/`.

# %%
from pneumocam.box_geometry import dataset_geometry  # noqa: E402

geometry, baselines = dataset_geometry(summary.out_dir)
display(geometry[["mean", "mean_rsna", "q05", "q05_rsna", "q50", "q50_rsna", "q95", "q95_rsna"]].round(3))
test_baselines = baselines["test"]
print(f"boxes with their centre in the image's left half: {baselines['left_half_share']:.1%} "
      f"(RSNA {baselines['rsna_left_half_share']:.1%})")
print(f"test split, {test_baselines['n_eval']} positive images: best fixed point hits a box in "
      f"{test_baselines['fixed_point_pointing_game']:.1%} (RSNA {baselines['rsna_real']['fixed_point_pointing_game']:.1%}); "
      f"mean-box prior IoU {test_baselines['mean_box_prior_iou']:.3f} "
      f"(RSNA {baselines['rsna_real']['mean_box_prior_iou']:.3f})")
