"""Datasets on disk: the UniMat HDF5 format, the input readers and the resumable converter with its journal.

Owns ``hdf5`` (write / append / read, ``describe``), ``compact`` (a copy without the dense tensor,
for the reference set shipped beside a model), ``readers`` (CSV, CIF, tar, ASE db, extxyz,
``.res`` as records), ``cif_p1`` (the fast P1 CIF reader), ``convert`` and ``journal``
(``unimat-convert``). It may import ``core``, numpy, h5py, ase and (inside functions) pymatgen;
never torch (the torch ``Dataset`` is ``ase_unimat.training.dataset``) nor the layers above.
"""
