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
