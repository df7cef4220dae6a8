"""Local clusters and developer tooling for ShieldX (not part of the shieldx distribution)."""
