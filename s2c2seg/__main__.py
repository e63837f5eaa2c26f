"""``python -m s2c2seg`` (also what ``torchrun -m s2c2seg`` runs)."""
from .cli import main

raise SystemExit(main())
