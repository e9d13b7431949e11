"""Thin click commands of ase-unimat; installed as ``ase_unimat.cli`` (see pyproject.toml)."""
