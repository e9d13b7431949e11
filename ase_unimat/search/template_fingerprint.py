"""Cheap duplicate fingerprints of template structures, vectorised over a group of equal size.

For every atom: the ``k`` shortest distances to atoms of each element role (periodic images
included), in units of ``(V / N)^(1/3)`` so isotropic scaling does not matter, capped at ``RADIUS``.
Rows are quantised to bins of ``TOL`` and hashed, after putting atoms in a canonical order (by target
role, then by their own row), into one 64-bit key per (structure, element assignment). Equal keys
mean the same structure up to scaling and the element substitution; values that straddle a bin
edge can keep a duplicate apart, which only costs a redundant seed.
"""

from __future__ import annotations

import itertools

import numpy as np

K_NEIGHBOURS = 4
RADIUS = 2.5
TOL = 0.05


def _weights(size: int) -> np.ndarray:
    """Fixed pseudo-random 64-bit hash weights (the same on every call)."""
    return np.random.default_rng(20240607).integers(1, 2**62, size=size, dtype=np.uint64)


def role_distances(cells: np.ndarray, fracs: np.ndarray, roles: np.ndarray, n_roles: int, *,
                   k: int = K_NEIGHBOURS, chunk: int = 64) -> np.ndarray:
    """(G, n, n_roles, k) shortest scaled distances from each atom to atoms of each role.

    Parameters
    ----------
    cells : (G, 3, 3) cell rows of G structures with n atoms each.
    fracs : (G, n, 3) fractional coordinates.
    roles : (G, n) role index (0 .. n_roles - 1) of every atom.
    """
    g_total, n = roles.shape
    out = np.empty((g_total, n, n_roles, k))
    volume = np.abs(np.linalg.det(cells))  # (G,)
    scaled = cells / ((volume / n) ** (1.0 / 3.0))[:, None, None]  # (G, 3, 3) volume n
    heights = 1.0 / np.linalg.norm(np.linalg.inv(scaled), axis=1)  # (G, 3) plane spacings
    reach = np.ceil(RADIUS / heights).astype(int)  # (G, 3) image range each structure needs
    _, batch_of = np.unique(reach, axis=0, return_inverse=True)
    for b in np.unique(batch_of):
        members = np.flatnonzero(batch_of.ravel() == b)
        for start in range(0, len(members), chunk):
            sl = members[start : start + chunk]
            _fill(out, sl, scaled[sl], fracs[sl], roles[sl], reach[sl[0]], n_roles, k)
    return out


def _fill(out, sl, cell, frac, roles, reach, n_roles: int, k: int) -> None:
    """Write the role distances of structures ``sl`` (same image range ``reach``) into ``out``."""
    n = frac.shape[1]
    cart = np.einsum("gni,gij->gnj", frac, cell)  # (G, n, 3)
    grid = np.array(list(itertools.product(*[range(-r, r + 1) for r in reach])), dtype=float)  # (K, 3)
    shifts = np.einsum("ki,gij->gkj", grid, cell)  # (G, K, 3)
    diff = cart[:, None, :, None, :] - cart[:, :, None, None, :] + shifts[:, None, None, :, :]  # (G, n, n, K, 3)
    dist = np.sqrt(np.einsum("gabkx,gabkx->gabk", diff, diff))  # (G, n, n, K)
    dist[dist < 1e-8] = np.inf
    kk = min(k, dist.shape[-1])
    pair = np.partition(dist, kk - 1, axis=-1)[..., :kk] if dist.shape[-1] > kk else dist  # (G, n, n, kk)
    for r in range(n_roles):
        masked = np.where((roles == r)[:, None, :, None], pair, np.inf).reshape(len(cell), n, -1)  # (G, n, n*kk)
        nearest = np.sort(masked, axis=-1)[..., :k]  # (G, n, <= k)
        if nearest.shape[-1] < k:
            nearest = np.concatenate([nearest, np.full((*nearest.shape[:2], k - nearest.shape[-1]), np.inf)], -1)
        out[sl, :, r, :] = np.minimum(nearest, RADIUS)


def keys(distances: np.ndarray, roles: np.ndarray, perm: tuple[int, ...], *, repeat: int = 1) -> np.ndarray:
    """(G,) uint64 structure keys after mapping template role ``i`` to target role ``perm[i]``.

    ``repeat`` > 1 treats each structure as its ``repeat``-fold supercell (every row repeated), so a
    supercell candidate can match a template of full size.
    """
    perm_arr = np.asarray(perm)
    inverse = np.argsort(perm_arr)
    d = distances[:, :, inverse, :]  # columns in target-role order (G, n, E, k)
    target_roles = perm_arr[roles]  # (G, n)
    if repeat > 1:
        d, target_roles = np.repeat(d, repeat, axis=1), np.repeat(target_roles, repeat, axis=1)
    g, n = target_roles.shape
    q = np.rint(d.reshape(g, n, -1) / TOL).astype(np.int64).astype(np.uint64)  # (G, n, E*k)
    width = q.shape[-1]
    row_key = (q * _weights(width)).sum(axis=-1)  # (G, n), wraps modulo 2^64
    order = np.lexsort((row_key, target_roles), axis=-1)  # (G, n)
    ordered = np.take_along_axis(q, order[:, :, None], axis=1).reshape(g, -1)  # (G, n*E*k)
    ordered_roles = np.take_along_axis(target_roles, order, axis=1).astype(np.uint64)  # (G, n)
    flat = np.concatenate([ordered, ordered_roles], axis=1)
    return (flat * _weights(flat.shape[1])).sum(axis=-1)
