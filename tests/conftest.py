"""Shared test setup: never touch a model hub (a failed online load costs 20-200 s)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
