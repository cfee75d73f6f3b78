"""Data: frames in, graphs out.

* :mod:`ase_denoise.data.frames` - reading and checking frames (``ase.Atoms``), their temperature and
  periodicity, coarse-grained beads, and :class:`Frame`, the arrays a model needs;
* :mod:`ase_denoise.data.graphs` - batching frames into MACE's graph format (:func:`collate`);
* :mod:`ase_denoise.data.neighbours` - neighbour lists and the Verlet (skin) lists that training and
  MD reuse;
* :mod:`ase_denoise.data.interop` - pymatgen ``Structure``/``Molecule``/``Trajectory`` in and out;
* :mod:`ase_denoise.data.reference` - reference systems whose true forces are known (harmonic and
  Morse dimers, Lennard-Jones argon), to sample data and check models.

The names below are the frames API; the other modules are imported by name.
"""

from ..errors import DataError
from .frames import (
    Frame,
    bead_atoms,
    bead_numbers,
    check_atoms,
    data_pbc,
    data_temperature,
    fold_far_atoms,
    read_frames,
    reference_forces,
    species_index,
    to_frame,
)

__all__ = ["DataError", "Frame", "bead_atoms", "bead_numbers", "check_atoms", "data_pbc", "data_temperature",
           "fold_far_atoms", "read_frames", "reference_forces", "species_index", "to_frame"]



