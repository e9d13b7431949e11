"""Training: the loop, its options, the deterministic data order, processes under torchrun (DDP), EMA, the torch Dataset.

Owns ``trainer`` (``train``; its settings are ``model.config.TrainConfig``), ``data_order`` (seeded epoch
permutations and augmentation), ``distributed`` (process set-up, DDP helpers), ``ema`` and
``dataset`` (``UniMatDataset`` over an HDF5 file). It may import ``core``, ``data``, ``model`` and
torch; nothing in ``generation``, ``search`` or ``evaluation`` imports it.
"""
