"""DistributedDataParallel on CPU: two Gloo processes via torch.distributed.run, and the
distributed weighted sampler's disjoint, balanced shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, make_processed, predict_proba

from pneumocam import paths
from pneumocam.checkpoint import load_model_state
from pneumocam.data import DistributedWeightedSampler
from pneumocam.metrics import safe_roc_auc
from pneumocam.model import build_model
from pneumocam.processed import load_split, read_stats


def test_distributed_sampler_disjoint_balanced_shares():
    labels = np.array([1] * 13 + [0] * 87)  # 13% positive, 100 images
    world = 2
    samplers = [DistributedWeightedSampler(labels, "balanced", world, r, seed=11)
                for r in range(world)]
    pooled = []
    for epoch in range(30):
        shares = []
        for s in samplers:
            s.set_epoch(epoch)
            shares.append(list(iter(s)))
        glob = samplers[0].global_indices().tolist()
        assert [len(sh) for sh in shares] == [50, 50]
        # disjoint positions of one global draw, which the shares make up exactly
        assert shares[0] == glob[0::2] and shares[1] == glob[1::2]
        pooled += shares[0] + shares[1]
    assert abs(labels[np.array(pooled)].mean() - 0.5) < 0.03  # balanced across ranks


@pytest.mark.slow
def test_two_process_ddp_run(tmp_path):
    # 15 validation images: uneven shards (8 + 7) exercise the gather's padding.
    make_processed(tmp_path, n_train=40, n_val=15, n_test=16)
    env = {**os.environ, paths.ROOT_ENV_VAR: str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(REPO / "scripts" / "train_balanced.py"), "--epochs", "1", "--batch-size", "8",
           "--n-boot", "20", "--no-progress", "--run-name", "ddp", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("[train] epoch 1/1") == 1  # only rank 0 reports
    cfg = json.loads((tmp_path / "weights" / "ddp" / "config.json").read_text())
    assert cfg["settings"]["world_size"] == 2
    history = pd.read_csv(tmp_path / "metrics" / "ddp.csv")
    assert history["epoch"].tolist() == [1]
    # 40 images, 2 ranks x 20 positions, batches of 8: 2 full batches per rank
    assert history["images_per_second"].iloc[0] > 0
    pred = pd.read_csv(tmp_path / "metrics" / "ddp_predictions_val.csv")
    assert len(pred) == 15 and pred["patientId"].is_unique
    # The gathered validation AUC is the AUC of the saved model on every val image once.
    processed = tmp_path / "data" / "Processed"
    stats = read_stats(processed)
    model = build_model()
    model.load_state_dict(load_model_state(tmp_path / "weights" / "ddp" / "best.pth"))
    val = load_split(processed, "val")
    p = predict_proba(model, val.images, stats["mean"], stats["std"])
    assert history["val_auc"].iloc[0] == pytest.approx(safe_roc_auc(val.labels, p), abs=1e-9)
    assert (tmp_path / "metrics" / "ddp_eval.json").is_file()
