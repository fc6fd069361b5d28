"""mtl: a compact multi-task trainer for MT quality estimation."""
