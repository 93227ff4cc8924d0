"""Run by `torchrun --nproc_per_node=N tests/ddp_worker.py OUT`: a short deterministic regression with the shared loop.

Rank 0 writes the loss history to OUT as JSON. Every world size sees the same global batches.
"""
import json
import sys

import torch

from deepgen.nets import mlp
from deepgen.train import TrainConfig, train

torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
x = torch.randn(512, 4, generator=gen)
y = x @ torch.randn(4, 1, generator=gen) + 0.1 * torch.randn(512, 1, generator=gen)
torch.manual_seed(0)
model = mlp(4, 1, hidden=16, depth=2)
result = train(model, lambda m, xb, yb: (m(xb) - yb).square().mean(), (x, y),
               TrainConfig(steps=20, batch=64, lr=1e-2, ema=0, log_every=1, ckpt_every=0, desc="ddp check"))
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
import os
if int(os.environ.get("RANK", 0)) == 0:
    json.dump([h["loss"] for h in result.history], open(sys.argv[1], "w"))
