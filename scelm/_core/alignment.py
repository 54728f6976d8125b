"""The common frame of an ensemble's maps: one orthogonal matrix per member.

Members trained from the same starting layout land in nearly the same frame, but each may
drift by a rotation (or, rarely, a reflection). Before their maps are averaged, each is
brought onto their common frame by generalised orthogonal Procrustes: R_m minimises
sum_i |R_m (y_mi - ȳ_m) - t_i|^2 over orthogonal R_m, where t is the mean of the aligned
maps, iterated to a fixed point.

Why orthogonal and linear: an orthogonal R_m keeps every distance of member m's map, so the
consensus averages congruent copies and shears none of them (the average still contracts
whatever the members do not share); a linear R_m (no
translation) keeps the consensus positively homogeneous, which makes its explanations exact.
Rotations are fitted on centred maps, so a member's offset does not tilt them; the offsets
left in place only shift the whole consensus, they do not blur it.
"""

from __future__ import annotations

import numpy as np

MAX_ITER = 50
TOL = 1e-10


def _rotation_onto(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Orthogonal R minimising |source R^T - target| (both centred, ``(n, d)``)."""
    u, _, vt = np.linalg.svd(source.T @ target)
    return (u @ vt).T


def _closest_orthogonal(a: np.ndarray) -> np.ndarray:
    """The orthogonal factor of ``a``'s polar decomposition."""
    u, _, vt = np.linalg.svd(a)
    return u @ vt


def procrustes_alignment(maps: np.ndarray) -> np.ndarray:
    """``(M, d, d)`` orthogonal matrices bringing the maps ``(M, n, d)`` of the same cells
    onto their common frame.

    The frame is fixed up to one global rotation; it is chosen so that the matrices are
    closest to the identity on average (``sum_m R_m`` symmetric positive semi-definite): the
    consensus keeps the orientation the members share, that of their starting layout.
    """
    maps = np.asarray(maps, dtype=np.float64)
    n_members, _, d = maps.shape
    centred = maps - maps.mean(1, keepdims=True)
    rotations = np.broadcast_to(np.eye(d), (n_members, d, d)).copy()
    target = centred[0]
    for _ in range(MAX_ITER):
        rotations = np.stack([_rotation_onto(y, target) for y in centred])
        new = np.einsum("mkd,mnd->nk", rotations, centred) / n_members
        change = np.sum((new - target) ** 2) / max(np.sum(new**2), 1e-300)
        target = new
        if change < TOL:
            break
    frame = _closest_orthogonal(rotations.sum(0))  # the global rotation left free
    return np.einsum("dk,mkj->mdj", frame.T, rotations)


def member_r2(maps: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """``(M,)``: how well each aligned member's map fits the consensus, R^2 = 1 - |R_m y_m - ȳ|^2
    / |ȳ|^2 on centred maps (ȳ the mean of the aligned maps). Members of one layout reach
    0.9 and more; a member near 0 or below laid the cells out its own way."""
    maps = np.asarray(maps, dtype=np.float64)
    centred = maps - maps.mean(1, keepdims=True)
    aligned = np.einsum("mkd,mnd->mnk", rotations, centred)
    consensus = aligned.mean(0)
    return 1.0 - ((aligned - consensus) ** 2).sum((1, 2)) / max(float((consensus**2).sum()), 1e-300)
