"""The Ewald Coulomb prior in torch, through torch-pme: the same term as
:class:`~ase_denoise.priors.EwaldCoulomb` (numpy), computed on any torch device with forces by
autograd, so that the prior can run where the model runs (a GPU, batched replicas).

``method="ewald"`` sums the prior's own reciprocal vectors (``0 < |k| < k_cut``, both ``+-k``) with
``torchpme.EwaldCalculator``: the numpy sum to rounding. ``method="pme"`` uses
``torchpme.PMECalculator`` (particle-mesh Ewald, O(N log N)) on a mesh of ``mesh_spacing`` A with
``interpolation_nodes`` per axis: an approximation whose error falls with the spacing.

Conventions: torch-pme splits ``1/r`` with a Gaussian of width ``smearing``, so the prior's
``alpha`` (LAMMPS' ``g_ewald``, 1/A) is ``smearing = 1 / (sqrt(2) alpha)``; the charges are divided by
``sqrt(eps_r)`` and the prefactor is ``e^2 / (4 pi eps0) = 14.3996 eV A``. Energies in eV, forces eV/A.

The real-space pairs come from the library's neighbour search (numpy, on the CPU); their distances
are computed in torch from the positions, so the forces are exact gradients.
"""

from __future__ import annotations

import math
from typing import Tuple, Union

import numpy as np
import torch

from ..data.neighbours import neighbour_graph
from .coulomb import COULOMB_EV_A, EwaldCoulomb, _charges_of, first_nonzero_positive

METHODS = ("ewald", "pme")


def _calculator(prior: EwaldCoulomb, method: str, mesh_spacing: float, interpolation_nodes: int,
                dtype: torch.dtype, device: torch.device):
    import torchpme

    potential = torchpme.CoulombPotential(smearing=1.0 / (math.sqrt(2.0) * prior.alpha), prefactor=COULOMB_EV_A)
    if method == "ewald":
        calculator = torchpme.EwaldCalculator(potential, lr_wavelength=2.0 * math.pi / prior.k_cut)
    elif method == "pme":
        calculator = torchpme.PMECalculator(potential, mesh_spacing=mesh_spacing,
                                            interpolation_nodes=interpolation_nodes)
    else:
        raise ValueError(f"Ewald Coulomb in torch: method {method!r} is not one of {METHODS}")
    return calculator.to(dtype=dtype, device=device)


def ewald_energy_and_forces(
    prior: EwaldCoulomb,
    numbers: np.ndarray,
    positions: torch.Tensor,
    cell: Union[np.ndarray, torch.Tensor],
    *,
    method: str = "ewald",
    mesh_spacing: float = 0.5,
    interpolation_nodes: int = 4,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``prior``'s energy (eV) and forces (eV/A) for ``positions`` [n, 3] or [R, n, 3] (R copies of one
    system in ``cell``, e.g. batched replicas) of atoms ``numbers`` [n], on ``positions``' device and
    dtype: energy [R] (or a scalar), forces of ``positions``' shape. The forces are ``-dE/dx`` by
    autograd; ``positions`` itself is not modified and needs no gradient."""
    if not positions.is_floating_point():
        raise TypeError(f"positions must be a floating-point tensor, got {positions.dtype}")
    single = positions.dim() == 2
    x_all = positions[None] if single else positions
    dtype, device = positions.dtype, positions.device
    cell_np = np.asarray(cell.detach().cpu() if isinstance(cell, torch.Tensor) else cell, dtype=np.float64)
    cell_t = torch.as_tensor(cell_np, dtype=dtype, device=device)
    numbers = np.asarray(numbers, dtype=np.int64)
    q = torch.as_tensor(_charges_of(prior.charges, numbers) / math.sqrt(prior.relative_permittivity), dtype=dtype,
                        device=device)[:, None]
    calculator = _calculator(prior, method, mesh_spacing, interpolation_nodes, dtype, device)
    kvectors = None
    if method == "ewald":  # the prior's own spherical set, both halves: the numpy sum's terms exactly
        _, k_half = prior.kvectors(cell_np)
        kvectors = torch.as_tensor(np.concatenate([k_half, -k_half]), dtype=dtype, device=device)
    energies, forces = [], []
    for x in x_all:
        x = x.detach().clone().requires_grad_(True)
        (sender, receiver), shifts = neighbour_graph(x.detach().cpu().double().numpy(), cell_np, (True, True, True),
                                                     prior.r_cut)
        # each pair once (the graph holds both ways; an atom and its own image: one of the two shifts)
        half = (sender < receiver) | ((sender == receiver) & first_nonzero_positive(shifts))
        pairs = torch.as_tensor(np.stack([sender[half], receiver[half]], axis=1), device=device)
        shift_vectors = torch.as_tensor(shifts[half] @ cell_np, dtype=dtype, device=device)
        distances = torch.linalg.norm(x[pairs[:, 1]] - x[pairs[:, 0]] + shift_vectors, dim=1)
        potential = calculator(charges=q, cell=cell_t, positions=x, neighbor_indices=pairs,
                               neighbor_distances=distances, kvectors=kvectors)
        energy = (q * potential).sum()
        (gradient,) = torch.autograd.grad(energy, x)
        energies.append(energy.detach())
        forces.append(-gradient)
    energy, force = torch.stack(energies), torch.stack(forces)
    return (energy[0], force[0]) if single else (energy, force)
