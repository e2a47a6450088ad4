"""Train the "balanced" model: ResNet-18 with a class-balanced WeightedRandomSampler.

Every line but the sampler is shared with scripts/train_original.py (pneumocam.train). Without
arguments: prepares the demo dataset if data/Processed is missing, trains, evaluates on the test
split and writes weights/balanced/, metrics/balanced*.csv|json and images/balanced/.
Multi-GPU/CPU: torchrun --nproc_per_node=N scripts/train_balanced.py ...
"""

from __future__ import annotations

from pneumocam import cli
from pneumocam.train import main

if __name__ == "__main__":
    cli.run_main(lambda: main(sampler="balanced"),
             resume_hint="rerun with --resume to continue after the last finished epoch")
