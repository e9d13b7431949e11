"""The diffusion model: config, networks, lattice reduction, diffusion, samplers, checkpoints, bundled models.

Owns ``config`` (the dataclass configs), ``network_common`` / ``network_dense`` /
``network_atoms`` (the networks, which import only torch, ``core`` and the config),
``cell_reduction``, ``diffusion`` (``build_model``, ``UniMatModel``), ``sampler``
(``get_sampler``, ``to_atoms``), ``checkpoint`` (the one checkpoint reader and writer) and
``bundled`` (where named models live; torch-free). It may import torch and ``core``; never
``data``, ``training``, ``generation``, ``search`` or ``evaluation``.
"""
