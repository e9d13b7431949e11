"""Relax-and-rank structure search: seeds, calculators, relaxation, AIRSS I/O, ranking."""
