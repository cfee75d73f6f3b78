"""The learned force field as a torch-sim model (``ModelInterface``; tested with torch-sim-atomistic 0.3.0).

    import torch_sim as ts
    from ase_denoise.integrations.torchsim import DenoiserTorchSimModel
    model = DenoiserTorchSimModel(load_model("licl-cg-300K"))
    state = ts.io.atoms_to_state(list_of_atoms, device=model.device, dtype=model.dtype)
    init, update = ts.integrators.nvt_langevin(model=model, dt=torch.tensor(1.0 * ase.units.fs),
                                               kT=torch.tensor(300 * ase.units.kB), gamma=...)

torch-sim batches many systems into one state (``system_idx``). ``forward`` hands all of them to
:func:`ase_denoise.inference.predict` as one batched forward (the sigma -> 0 correction and the priors
included), with one Verlet list per system kept between calls. Units are torch-sim's metal units,
which are ASE's (Angstrom, eV, amu; time in sqrt(amu A^2 / eV), so ``dt = 1.0 * ase.units.fs`` is 1 fs).

torch-sim's integrators read ``energy`` on every step: a forces-only model (vector or edge head) has
none and returns NaN there (not zeros, which would pass for an energy), so use the Langevin
integrators (``nvt_langevin``), not Nose-Hoover, whose conserved quantity needs energies. An energy-head model returns its free energy ``A`` (docs/energy-head.md).
No stress (``compute_stress`` is False): the model has no pressure. Releases of torch-sim after 0.3.0
need Python >= 3.12; the neighbour lists here are our own (numpy/matscipy on the CPU), so a state on
a GPU is copied to the CPU for them every step.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..data.frames import Frame, species_index
from ..data.neighbours import SkinNeighbourList
from ..errors import DataError
from ..forces import ForcesChoice, as_forces_choice, evaluation_levels
from ..inference import predict, predict_free_energy
from ..model import DenoiserMACE

try:  # the optional engine: this module exists for it
    import torch_sim as ts
    from torch_sim.models.interface import ModelInterface
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the torch-sim integration needs torch-sim: pip install 'ase_denoise[torchsim]'") from exc


class DenoiserTorchSimModel(ModelInterface):
    """A trained denoiser as a torch-sim ``ModelInterface``: ``forward(state)`` returns ``forces``
    [n_atoms, 3] (eV/A) and ``energy`` [n_systems] (eV; NaN, no energy, unless the model has the energy head).

    ``forces``, ``exclude_priors``: as :class:`~ase_denoise.calculator.DenoiseCalculator` (which forces:
    :class:`~ase_denoise.forces.ForcesChoice`, default the model's).
    ``skin``: the Verlet skin of each system's neighbour list (Angstrom). The model's own dtype and
    device are used (``self.dtype``, ``self.device``)."""

    def __init__(self, model: DenoiserMACE, *, forces: Optional[ForcesChoice] = None,
                 exclude_priors: Sequence[str] = (), skin: float = 1.0):
        super().__init__()
        parameter = next(model.parameters())
        self.model = model.eval()
        self._device, self._dtype = parameter.device, parameter.dtype
        self._compute_forces, self._compute_stress = True, False
        self.forces_choice = as_forces_choice(forces)
        evaluation_levels(model, self.forces_choice)  # refuses an untrained level or too high an order, now
        self.exclude_priors = tuple(exclude_priors)
        self.skin = float(skin)
        self._lists: List[SkinNeighbourList] = []
        self._counts: Optional[List[int]] = None

    def forward(self, state, **_) -> Dict[str, torch.Tensor]:
        if isinstance(state, dict):
            state = ts.SimState(**state, masses=torch.ones_like(state["positions"][:, 0]))
        positions = state.positions.detach().to("cpu", torch.float64).numpy()
        cells = state.row_vector_cell.detach().to("cpu", torch.float64).numpy()  # [n_systems, 3, 3], rows a, b, c
        numbers = state.atomic_numbers.detach().cpu().numpy()
        system_idx = state.system_idx.detach().cpu().numpy()
        unknown = sorted(set(numbers.tolist()) - set(self.model.config.atomic_numbers))
        if unknown:
            raise DataError(f"atomic numbers {unknown} are not in the model's element table {self.model.config.atomic_numbers}")
        pbc = (bool(state.pbc),) * 3
        counts = np.bincount(system_idx, minlength=cells.shape[0]).tolist()
        if counts != self._counts:  # a new batch layout: fresh Verlet lists
            self._lists = [SkinNeighbourList(self.model.config.r_max, self.skin) for _ in counts]
            self._counts = counts
        frames = [
            Frame(positions=positions[system_idx == i], species=species_index(numbers[system_idx == i],
                  self.model.config.atomic_numbers), cell=cells[i], pbc=pbc)
            for i in range(len(counts))
        ]
        kw = dict(forces=self.forces_choice, exclude_priors=self.exclude_priors, batch_size=len(frames),
                  neighbour_lists=self._lists)
        if self.model.config.head == "energy":
            energy, forces = predict_free_energy(self.model, frames, **kw)
        else:
            forces, energy = predict(self.model, frames, **kw), np.full(len(frames), np.nan)  # no energy
        to = dict(device=state.positions.device, dtype=state.positions.dtype)
        return {"energy": torch.as_tensor(energy, **to), "forces": torch.as_tensor(forces, **to)}
