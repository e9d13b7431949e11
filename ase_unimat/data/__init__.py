"""Datasets on disk: the UniMat HDF5 format, the input readers and the resumable converter with its journal.

Owns ``hdf5`` (write / append / read, ``describe``), ``compact`` (a copy without the dense tensor,
for the reference set shipped beside a model), the input readers (``readers``, the stream of CSV,
CIF, tar, ASE db, extxyz, ``.res`` records, over ``records``, ``input_formats`` and ``parsing``),
``cif_p1`` (the fast P1 CIF reader) and ``unimat-convert``: ``convert`` (the driver),
``convert_options`` (options, column specs, summary, ``ConversionError``), ``convert_worker``
(records parsed and encoded in the workers), ``journal`` (the resumable parts, the run key),
``exclude_lists`` (``--exclude`` ids, ``--exclude-formulas``) and ``convert_merge`` (parts -> output).
It may import ``core``, numpy, h5py, ase and (inside functions) pymatgen; never torch (the torch
``Dataset`` is ``ase_unimat.training.dataset``) nor the layers above.
"""
