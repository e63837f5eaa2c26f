"""``python -m s2c2seg`` (also what ``torchrun -m s2c2seg`` runs)."""
from .cli import console

raise SystemExit(console())
