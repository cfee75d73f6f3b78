"""Run by ``tests/test_lammps.py`` under ``mpiexec -n 2``: the LJ argon zoo model in LAMMPS on two
MPI ranks (``attach_denoiser(..., comm=...)``). Writes ``result.json`` (rank 0) to the directory
given as the first argument: how many atoms each rank held, and the largest difference between the
forces read back from LAMMPS and ``DenoiseCalculator`` on the same structure, before and after a
short Langevin run (atoms move between the ranks' subdomains on the way); and for a small
energy-head model, LAMMPS' ``pe`` against the calculator's energy (the fix's global energy is the
total, not summed over ranks)."""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from ase.io import read
from mpi4py import MPI

from ase_denoise import DenoiseCalculator, load_model
from ase_denoise.integrations.lammps import attach_denoiser, lammps_from_atoms

out = Path(sys.argv[1])
comm = MPI.COMM_WORLD
atoms = read(out / "start.extxyz")
model = load_model("lj-argon-94K").to(torch.float64)
lmp, type_to_element = lammps_from_atoms(atoms, comm=comm)
lmp.commands_string("pair_style zero 6.0\npair_coeff * *")
result = {"size": comm.Get_size()}
try:  # a multi-rank instance without its communicator is refused on every rank
    attach_denoiser(lmp, model, type_to_element, fix_id="nocomm")
except ValueError as exc:
    result["refused"] = str(exc)
fix = attach_denoiser(lmp, model, type_to_element, comm=comm)
reference = DenoiseCalculator(model)


def read_back():
    """(max |F_lammps - F_calculator|, max |F|) on the whole structure, from LAMMPS' own arrays."""
    n = lmp.get_natoms()
    forces = np.array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3)  # in atom-ID order, on every rank
    positions = np.array(lmp.gather_atoms("x", 1, 3)).reshape(n, 3)
    current = atoms.copy()
    current.positions = positions
    expected = reference.get_forces(current)
    return float(np.abs(forces - expected).max()), float(np.abs(expected).max())


lmp.command("run 0")
result["nlocal"] = comm.allgather(int(lmp.extract_setting("nlocal")))
result["before"] = read_back()
lmp.commands_string("""
velocity all create 94.4 4928459 dist gaussian
fix md all langevin 94.4 94.4 0.1 12345
fix nve all nve
timestep 0.005
run 40
""")
result["nlocal_after"] = comm.allgather(int(lmp.extract_setting("nlocal")))
lmp.command("unfix md")  # fix langevin adds its friction and noise to LAMMPS' force array
lmp.command("run 0")  # forces at the current positions (the last step's came before its position update)
result["after"] = read_back()
result["calls"] = comm.allgather(fix.calls)
lmp.close()

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _helpers import make_model  # noqa: E402

energy_model = make_model([18], noise_std=0.05, pbc=True, head="energy", r_max=4.5, num_channels=4, max_ell=1,
                          max_L=1, correlation=1, num_interactions=1, radial_mlp=[8])
lmp, type_to_element = lammps_from_atoms(atoms, comm=comm)
lmp.commands_string("pair_style zero 5.0\npair_coeff * *\nthermo_style custom step pe")
attach_denoiser(lmp, energy_model, type_to_element, comm=comm)
lmp.command("run 0")
result["pe"] = [lmp.get_thermo("pe"), float(DenoiseCalculator(energy_model).get_potential_energy(atoms))]
lmp.close()
if comm.Get_rank() == 0:
    (out / "result.json").write_text(json.dumps(result))
