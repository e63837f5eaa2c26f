"""Shared test setup: never touch a model hub (a failed online load costs 20-200 s)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

# Two xdist workers share the two cores: one intra-op thread each avoids oversubscription on tiny tensors.
torch.set_num_threads(1)
