"""Apps: the plugins users come for (SPEC §8), registered in `registry.py`."""
