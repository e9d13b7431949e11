"""spacegroup="auto" vs None on a space-group model: CSP match on mp_20/val (bench/results/spacegroup_default.json).

Run:  nice -n 5 python -m bench._spacegroup_default MODEL.pt K OUT.json [N_COMPOSITIONS]
"""
import json
import sys

import numpy as np
import torch

from ase_unimat.data.hdf5 import read_atoms
from ase_unimat.evaluation.csp import csp_match
from ase_unimat.evaluation.validity import structure_validity
from ase_unimat.generation import generate, load_model
from ase_unimat.generation.spacegroups import SpacegroupPrior

torch.set_num_threads(1)
net = load_model(sys.argv[1], device="cpu")
k = int(sys.argv[2])
refs = read_atoms("/work/data/mp20_val.h5")[: int(sys.argv[4]) if len(sys.argv) > 4 else None]
prior = SpacegroupPrior.from_hdf5("/work/data/mp_wide.h5")
out = {}
for mode in ("auto", None):
    preds = []
    for i, ref in enumerate(refs):
        s = ref.get_chemical_symbols()
        counts = {e: s.count(e) for e in set(s)}
        preds.append(generate(counts, seeds=[1000 * i + j for j in range(k)], model=net, spacegroup=mode,
                              spacegroup_prior=prior, device="cpu"))
    m = csp_match(preds, refs, k=k)
    out[str(mode)] = {"match_rate_at_1": m["match_rate_at_1"], f"match_rate_at_{k}": m["match_rate_at_k"],
                      "rmse_at_k": m["rmse_at_k"], "validity": float(np.mean([structure_validity(p) for ps in preds for p in ps]))}
    print(mode, out[str(mode)], flush=True)
json.dump(out, open(sys.argv[3], "w"), indent=1)
