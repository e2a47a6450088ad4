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
# # 02 · Train (balanced): ResNet-18 with a class-balanced sampler
#
# About 22% of RSNA radiographs are positive ("Lung Opacity"). Trained on the data as it is
# (notebook `02-Train-Original`), a classifier sees four negatives for every positive. Here every
# training batch is drawn with a `WeightedRandomSampler` whose weight for an image is
# 1 / (number of training images of its class), with replacement, as many draws per epoch as
# there are training images: on average half of each batch is positive. **Every other line is
# shared with the original run** (`pneumocam.train`); the sampler is one setting.
#
# What happens, the same as `python scripts/train_balanced.py`:
#
# 1. the model: torchvision ResNet-18 with a 1-channel `conv1` and one logit (`fc = Linear(512, 1)`),
#    random initialisation;
# 2. each step: uint8 images → [0, 1] → mild random affine (±5°, ±4% shift, 0.95–1.05 zoom, black
#    fill; never a crop that could lose a finding) → normalisation with the training mean/std →
#    BCE-with-logits, AdamW, cosine learning-rate schedule with a short warm-up;
# 3. after each epoch: validation loss, ROC AUC, AP and threshold-0.5 metrics → one row of
#    `metrics/balanced.csv`; `weights/balanced/last.pth` every epoch, `best.pth` when the
#    validation ROC AUC improves;
# 4. at the end, the best epoch's model scores validation and test: the operating threshold is
#    chosen on validation (Youden's J) and the test metrics get bootstrap intervals and the
#    view-position baseline (`metrics/balanced_eval.json`, figures in `images/balanced/`).
#
# Without processed data, the synthetic demo dataset is prepared first, and the defaults are
# short (a few epochs, minutes on a CPU); on the real data they are full-length. An interrupted
# run continues with `resume = True`.

# %% tags=["parameters"]
data_dir = None  # processed folder; None: data/Processed (prepared from the demo if missing)
run_name = "balanced"  # weights/<run>/, metrics/<run>*.csv|json, images/<run>/
epochs = None  # None: 20 on real data, a short schedule on the demo
batch_size = None  # per process; None: 256 on CUDA, 32 on CPU and on the demo
lr = None  # None: 1e-3 (AdamW)
seed = None  # None: 0
device = "auto"  # auto | cpu | cuda
limit = None  # use only this many training images (smoke runs)
resume = False  # continue weights/<run>/last.pth
overwrite = False  # replace an existing run of the same name
n_boot = 1000  # bootstrap resamples of the test metrics
progress = True  # progress bars

# %%
# Imports follow the parameters cell (papermill-style), hence the noqa.
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from IPython.display import Image, display  # noqa: E402

from pneumocam import paths  # noqa: E402
from pneumocam.evaluation import evaluation_summary  # noqa: E402
from pneumocam.train import TrainConfig, ensure_training_data, train  # noqa: E402
from pneumocam.train_overview import describe_processed, sampler_batches  # noqa: E402

processed = ensure_training_data(Path(data_dir) if data_dir else None)
data = describe_processed(processed)  # prints the source, loudly when it is the demo
data.counts

# %% [markdown]
# ## Train
#
# The sampler is the only setting that differs from `02-Train-Original`.

# %%
config = TrainConfig(
    run_name=run_name, sampler="balanced", data_dir=processed, epochs=epochs,
    batch_size=batch_size, lr=lr, seed=seed, device=device, limit=limit, resume=resume,
    overwrite=overwrite, n_boot=n_boot, progress=progress,
)
result = train(config)

# %% [markdown]
# ## What the sampler puts in each batch
#
# The one difference between the two training notebooks, made visible. The table counts the
# negatives and positives of the first batches of epoch 1 as each sampler draws them from this
# run's training labels, with this run's seed and batch size, through the package's own batch
# source (`pneumocam.data.sampler_preview` over `LoaderBatches`, what `train` feeds from on a
# CPU). Look at the positive columns: **original** shuffles the split, so each batch holds about
# the data's share of positives; **balanced** draws with a `WeightedRandomSampler` (weight
# 1 / class count, with replacement), so about half of each batch is positive, and positives
# come back more than once per epoch. The chart is saved as `images/<run>/sampler_batches.png`.

# %%
batches = sampler_batches(processed, result.settings, demo=data.demo)
display(batches.draws)
display(Image(filename=batches.figure))

# %% [markdown]
# ## Learning curves
#
# One row per epoch from `metrics/<run>.csv` (figure: `images/<run>/curves.png`); the dashed
# line marks the epoch whose weights were kept (highest validation ROC AUC).

# %%
history = pd.read_csv(result.metrics_csv)
display(Image(filename=result.evaluation["figures"]["curves"]))
history.round(4)

# %% [markdown]
# ## Test set, at the best epoch
#
# Headline numbers with 95% bootstrap intervals. The operating threshold is chosen on the
# validation split, never on the test split. The view-position-only baseline (AP vs PA) is the
# shortcut any model must beat.

# %%
evaluation_summary(result.evaluation).round(3)

# %%
display(Image(filename=result.evaluation["figures"]["roc"]))
display(Image(filename=result.evaluation["figures"]["confusion"]))
display(Image(filename=result.evaluation["figures"]["reliability"]))

# %% [markdown]
# The weights are in `weights/<run>/best.pth` (model state_dict) with `config.json` beside them
# (every setting, the data source, library versions and git commit); `03-Interpretability` reads
# them to draw Class Activation Maps.

# %% [markdown]
# ## Original vs balanced, on the same test images
#
# `scripts/compare.py` in one call: both runs (and `posweight` when it exists) side by side,
# with a paired bootstrap interval for the AUC difference (`metrics/comparison.csv`,
# `images/comparison.png`). It needs the original run (`02-Train-Original` or
# `python scripts/train_original.py`) on the same processed data.

# %%
from pneumocam.compare import compare_runs, describe_comparison  # noqa: E402
from pneumocam.errors import RunOutputsError  # noqa: E402

try:
    comparison = compare_runs(n_boot=n_boot)
except RunOutputsError as exc:
    comparison = None
    print(f"No comparison yet: {exc}")
if comparison is not None:
    display(Image(filename=str(paths.images_dir() / "comparison.png")))
    print(describe_comparison(comparison))
    display(comparison[["run", "roc_auc", "roc_auc_ci95_lo", "roc_auc_ci95_hi",
                        "operating_threshold", "sensitivity_at_op", "specificity_at_op",
                        "auc_diff_vs_reference", "auc_diff_ci95_lo", "auc_diff_ci95_hi"]].round(3))


# %% [markdown]
# ## The study's offline report
#
# `python scripts/report.py` in one call: `images/index.html` gathers the data, each run's
# settings, curves and test metrics beside their baselines, and the comparison above, on one page
# that opens from `file://` with no server (the CAM gallery joins it after `03-Interpretability`).

# %%
from pneumocam.report_site import write_site  # noqa: E402

print(f"open {write_site()} in a browser")
