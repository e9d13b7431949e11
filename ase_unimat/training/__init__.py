"""Training: the loop (its settings are the config's TrainConfig), the deterministic data order, processes under torchrun (DDP), EMA, the torch Dataset.

Owns ``trainer`` (``train``, the loop; its settings are ``model.config.TrainConfig``), ``loaders``
(datasets, loaders, batches on the device), ``optim`` (AdamW, the warm-up + cosine LR schedule),
``noise_seed`` (the per-step noise seeds), ``resume`` (what a checkpoint holds: save, resume, warm
start), ``run_log`` (``log.jsonl``), ``data_order`` (seeded epoch permutations and augmentation),
``distributed`` (process set-up, DDP helpers), ``ema`` and ``dataset`` (``UniMatDataset`` over an
HDF5 file). It may import ``core``, ``data``, ``model`` and torch; nothing in ``generation``,
``search`` or ``evaluation`` imports it.
"""
