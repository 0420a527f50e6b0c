"""Writes ``run-ewtest01.wandb``, the W&B offline run file the importer tests read (made with wandb 0.31.0).

W&B is not a dependency: run this in an environment that has it, ``python make_wandb_offline.py``, then copy
``wandb/offline-run-*/run-ewtest01.wandb`` here. Machine details are left out of the file (no stats, meta or machine
info).
"""

import os

os.environ.update(
    WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true", WANDB_DISABLE_CODE="true", WANDB_CONSOLE="off"
)
import wandb  # noqa: E402 - after the environment that configures it

settings = wandb.Settings(x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True)
run = wandb.init(project="rl", name="grpo-offline", id="ewtest01", settings=settings)
for s in range(0, 80, 2):
    h = 1.1 * 0.97**s
    run.log(
        {"train/entropy": h, "train/reward": 0.1 + s / 300, "train": {"kl": 0.01 * (1 + s / 100)}, "phase": "rl"},
        step=s,
    )
run.log({"train/entropy": float("nan"), "train/reward": 0.5}, step=80)
run.log({"train/entropy": float("inf")}, step=82)
run.finish()
