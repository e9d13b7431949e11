"""Evaluation of generated structures: CDVAE/DiffCSP metrics and the S.U.N. report against a hull of our data.

Owns ``metrics`` (the bundle of ``validity``, ``coverage``, ``distributions``, the Wasserstein
distances, and ``csp``, the CSP match), ``reference`` (the Materials Project records of
``../shared/data``), ``elements`` (elemental references), ``hull`` (relaxed phase energies, their
cache, energy above hull) and ``sun`` (uniqueness, novelty, ``stability_report``). It is the top
layer: it may import every layer below (the search's relaxation pool included), and nothing in the
library imports it (only ``cli`` and ``bench``).
"""
