"""Train the "original" model: ResNet-18 on the imbalanced data with plain shuffling.

Every line but the sampler is shared with scripts/train_balanced.py (pneumocam.train). Without
arguments: prepares the demo dataset if data/Processed is missing, trains, evaluates on the test
split and writes weights/original/, metrics/original*.csv|json and images/original/.
A third remedy, a weighted loss: `python scripts/train_original.py --pos-weight auto --run-name
posweight`. Multi-GPU/CPU: torchrun --nproc_per_node=N scripts/train_original.py ...
"""

from __future__ import annotations

from pneumocam import cli
from pneumocam.train import main

if __name__ == "__main__":
    cli.run_main(lambda: main(sampler="original"),
             resume_hint="rerun with --resume to continue after the last finished epoch")
