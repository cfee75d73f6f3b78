"""Frames in, graphs out: reading and checking data, deriving a model's settings from it, batching.

A *frame* is an equilibrium snapshot (``ase.Atoms``). Per-atom force labels, when a frame has them,
are ``atoms.arrays["ref_forces"]`` or, failing that, forces stored by a single-point calculator
(e.g. read from an extxyz file): the ``force_matching`` and ``hybrid`` losses train on them, and
validation and ``ase-denoise eval`` compare predictions with them; the ``denoising`` loss never
sees them. The sampling temperature may be given per frame in ``atoms.info["temperature_K"]``; a
data set must have a single temperature.

Graphs follow MACE's batch format (see :mod:`ase_denoise.model`); neighbour lists come from
:mod:`ase_denoise.neighbours`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from .config import ModelConfig, PhysicsConfig
from .neighbours import SkinNeighbourList, average_num_neighbors, cell_heights, neighbour_graph, reused_edges

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """Raised for input data the library cannot use; the message names the problem."""


def check_atoms(
    atoms: Atoms,
    *,
    atomic_numbers: Optional[Sequence[int]] = None,
    pbc: Optional[Sequence[bool]] = None,
    r_max: Optional[float] = None,
    what: str = "structure",
    far_atoms_ok: bool = False,
    bead_names: Optional[Dict[int, str]] = None,
) -> None:
    """Raise :class:`DataError` with a precise message if ``atoms`` cannot be fed to a model.

    Checks: at least two atoms; finite positions; elements in ``atomic_numbers`` (named by
    ``bead_names`` for a coarse-grained model's placeholder numbers); periodicity equal
    to ``pbc``; a periodic cell with finite entries and non-zero volume, every periodic height >=
    ``r_max`` and (unless ``far_atoms_ok``: the calculator moves such atoms back itself) no atom more
    than one cell length outside it.
    """
    if not isinstance(atoms, Atoms):
        raise DataError(f"{what}: expected ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise DataError(f"{what} is empty (0 atoms)")
    if n == 1:
        raise DataError(f"{what} has a single atom: a denoiser needs neighbours to predict forces")
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = np.unique(np.nonzero(~np.isfinite(pos))[0])
        raise DataError(f"{what} has non-finite (NaN or inf) positions for atoms {bad[:10].tolist()}")
    if atomic_numbers is not None:
        known = set(int(z) for z in atomic_numbers)
        unknown = sorted(set(int(z) for z in atoms.numbers) - known)
        if unknown:
            names = [chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z) for z in unknown]
            if bead_names:  # a coarse-grained model: placeholder numbers of named bead types
                table = [f"{z} ({bead_names.get(z, chemical_symbols[z])})" for z in sorted(known)]
                raise DataError(f"{what} contains bead number(s) {unknown} outside the model's bead table {table}")
            table = [chemical_symbols[z] for z in sorted(known)]
            raise DataError(f"{what} contains element(s) {names} outside the model's element table {table}")
    if pbc is not None and tuple(bool(p) for p in atoms.pbc) != tuple(bool(p) for p in pbc):
        raise DataError(
            f"{what} has periodicity pbc={tuple(bool(p) for p in atoms.pbc)} but the model was trained "
            f"with pbc={tuple(bool(p) for p in pbc)}"
        )
    if atoms.pbc.any():
        cell = atoms.cell.array
        if not np.all(np.isfinite(cell)):
            raise DataError(f"{what} is periodic but its cell has non-finite (NaN or inf) entries: {cell.tolist()}")
        if abs(np.linalg.det(cell)) < 1e-9:
            raise DataError(f"{what} is periodic but its cell has zero volume: {cell.tolist()}")
        heights = cell_heights(cell)
        if r_max is not None:
            small = [i for i in range(3) if atoms.pbc[i] and heights[i] < r_max]
            if small:
                raise DataError(
                    f"{what}: periodic cell too small, heights {np.round(heights, 3).tolist()} Angstrom "
                    f"are below the model cutoff r_max={r_max} along axes {small}"
                )
        if far_atoms_ok:
            return
        far = np.nonzero(far_from_cell(atoms.cell.scaled_positions(pos), atoms.pbc))[0]
        if len(far):
            raise DataError(
                f"{what}: atoms {far[:10].tolist()} lie more than one cell length outside the periodic cell "
                "(wrap them with atoms.wrap() if this is intended)"
            )


def far_from_cell(scaled_positions: np.ndarray, pbc: Sequence[bool]) -> np.ndarray:
    """[n] mask of atoms more than one cell length outside the cell along a periodic axis."""
    return np.any(((scaled_positions < -1.0) | (scaled_positions > 2.0)) & np.asarray(pbc, dtype=bool), axis=1)


def fold_far_atoms(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool]) -> None:
    """Move atoms more than one cell length outside a periodic cell back by whole lattice vectors, in
    place (forces do not change; atoms within one cell length stay, so Verlet lists are not rebuilt
    each time an atom crosses a face)."""
    if not any(pbc):
        return
    scaled = np.linalg.solve(np.asarray(cell, dtype=np.float64).T, positions.T).T
    far = far_from_cell(scaled, pbc)
    if far.any():
        positions[far] -= np.where(pbc, np.floor(scaled[far]), 0.0) @ cell


def reference_forces(atoms: Atoms) -> Optional[np.ndarray]:
    """Per-atom force labels (eV/Angstrom) stored with a frame; ``None`` if absent."""
    if "ref_forces" in atoms.arrays:
        return np.asarray(atoms.arrays["ref_forces"], dtype=np.float64)
    calc = atoms.calc
    if calc is not None and "forces" in getattr(calc, "results", {}):
        return np.asarray(calc.results["forces"], dtype=np.float64)
    return None


def read_frames(source: Union[PathLike, Atoms, Iterable], index: str = ":") -> List[Atoms]:
    """Read frames from any file ASE can read, a list of ``Atoms``, or pymatgen structures.

    Raises :class:`DataError` if the file is missing, in an unknown format, or holds no frames.
    """
    if isinstance(source, Atoms):
        frames = [source]
    elif isinstance(source, (str, os.PathLike)):
        import ase.io

        path = os.fspath(source)
        if not os.path.exists(path):
            raise DataError(f"data file {path!r} does not exist")
        try:
            frames = ase.io.read(path, index=index)
        except Exception as exc:  # ASE raises many types for unreadable files
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                raise DataError(f"data file {path!r} is empty (0 bytes): no frames") from exc
            why = "unknown or unsupported file format, " if type(exc).__name__ == "UnknownFileTypeError" else ""
            raise DataError(f"could not read frames from {path!r}: {why}{type(exc).__name__}: {exc}") from exc
        if isinstance(frames, Atoms):
            frames = [frames]
    else:
        frames = [_to_atoms(item) for item in source]
    frames = list(frames)
    if not frames:
        raise DataError(f"no frames in {source!r}")
    return frames


def _to_atoms(item) -> Atoms:
    if isinstance(item, Atoms):
        return item
    try:  # pymatgen Structure / Molecule / Trajectory frames
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(item)
    except Exception as exc:
        raise DataError(f"cannot convert {type(item).__name__} to ase.Atoms: {exc}") from exc


def data_temperature(frames: Sequence[Atoms], temperature_K: Optional[float] = None) -> float:
    """The one temperature (K) of a data set.

    Uses ``temperature_K`` if given; frames that state ``info["temperature_K"]`` must all agree with
    each other and with it (within 1e-6 relative). Raises :class:`DataError` otherwise.
    """
    stated = sorted({float(a.info["temperature_K"]) for a in frames if "temperature_K" in a.info})
    if len(stated) > 1 and (stated[-1] - stated[0]) > 1e-6 * stated[-1]:
        raise DataError(
            f"frames have different temperatures {stated[:5]} K (info['temperature_K']); "
            "a denoiser learns the force field of one Boltzmann ensemble: train one model per temperature"
        )
    if temperature_K is None:
        if not stated:
            raise DataError("the training temperature is unknown: pass temperature_K (K) or set info['temperature_K']")
        temperature_K = stated[0]
    elif stated and abs(stated[0] - temperature_K) > 1e-6 * max(abs(temperature_K), 1.0):
        raise DataError(f"temperature_K={temperature_K} K disagrees with the frames' info['temperature_K']={stated[0]} K")
    if not np.isfinite(temperature_K) or temperature_K <= 0:
        raise DataError(f"temperature_K={temperature_K} K must be a positive number")
    return float(temperature_K)


def data_pbc(frames: Sequence[Atoms]) -> Tuple[bool, bool, bool]:
    """The one periodicity of a data set; mixed periodicity raises :class:`DataError`."""
    kinds = {tuple(bool(p) for p in a.pbc) for a in frames}
    if len(kinds) > 1:
        raise DataError(f"frames mix periodicities {sorted(kinds)}; use one periodicity per data set")
    return next(iter(kinds))  # type: ignore[return-value]


@dataclass
class Frame:
    """A clean frame in the arrays the model needs (float64 numpy, Angstrom)."""

    positions: np.ndarray  # [n, 3]
    species: np.ndarray  # [n] index into the element table
    cell: np.ndarray  # [3, 3]
    pbc: Tuple[bool, bool, bool]
    ref_forces: Optional[np.ndarray] = None  # [n, 3] eV/Angstrom: force labels, if the frame has them

    @property
    def n_atoms(self) -> int:
        return len(self.positions)


def species_index(numbers: np.ndarray, atomic_numbers: Sequence[int]) -> np.ndarray:
    lookup = {int(z): i for i, z in enumerate(atomic_numbers)}
    return np.array([lookup[int(z)] for z in numbers], dtype=np.int64)


def bead_numbers(bead_types: Sequence[str]) -> Dict[str, int]:
    """Placeholder atomic numbers 1, 2, ... for coarse-grained bead types, in order of first
    appearance in ``bead_types``. ASE has no particle types other than elements, so beads travel as
    ``Atoms`` whose numbers are these placeholders (masses set explicitly: :func:`bead_atoms`);
    train with ``bead_names={number: name}`` (:class:`~ase_denoise.config.ModelConfig`) so the model
    file and its table say what each number is."""
    numbers: Dict[str, int] = {}
    for name in bead_types:
        numbers.setdefault(str(name), len(numbers) + 1)
    return numbers


def bead_atoms(
    bead_types: Sequence[str], positions: np.ndarray, masses: Dict[str, float], numbers: Dict[str, int],
    cell: Optional[np.ndarray] = None, pbc: bool = False, forces: Optional[np.ndarray] = None,
) -> Atoms:
    """A coarse-grained structure: beads of types ``bead_types`` at ``positions`` (A), with
    placeholder atomic numbers ``numbers`` ({type: number}, e.g. from :func:`bead_numbers`) and
    ``masses`` ({type: amu}, e.g. the summed masses of the mapped atoms). ``forces`` (eV/A): mapped
    force labels, stored as ``arrays['ref_forces']``."""
    missing = sorted({str(t) for t in bead_types} - set(numbers) | ({str(t) for t in bead_types} - set(masses)))
    if missing:
        raise DataError(f"bead types {missing} have no placeholder number or no mass")
    atoms = Atoms(numbers=[numbers[str(t)] for t in bead_types], positions=positions,
                  masses=[masses[str(t)] for t in bead_types], cell=cell, pbc=pbc)
    if forces is not None:
        atoms.arrays["ref_forces"] = np.asarray(forces, dtype=np.float64)
    return atoms


def to_frame(atoms: Atoms, atomic_numbers: Sequence[int]) -> Frame:
    return Frame(
        positions=np.array(atoms.positions, dtype=np.float64),
        species=species_index(atoms.numbers, atomic_numbers),
        cell=np.array(atoms.cell.array, dtype=np.float64),
        pbc=tuple(bool(p) for p in atoms.pbc),  # type: ignore[arg-type]
        ref_forces=reference_forces(atoms),
    )


def collate(
    positions: Sequence[np.ndarray],
    frames: Sequence[Frame],
    n_elements: int,
    cutoff: float,
    dtype: torch.dtype,
    device: Union[str, torch.device] = "cpu",
    neighbour_lists: Optional[Sequence[SkinNeighbourList]] = None,
    update_lists: bool = True,
    noise_std: Optional[Sequence[float]] = None,
) -> Dict[str, torch.Tensor]:
    """Batch graphs for the (possibly noisy) ``positions`` of ``frames`` (MACE's batch format).

    ``neighbour_lists``: one :class:`SkinNeighbourList` per item to reuse (its cutoff must be
    ``cutoff``; ``update_lists`` is passed on as ``update``); without them each graph gets a fresh list.
    ``noise_std``: the noise level (Angstrom) each graph is evaluated at, stored as
    ``data["noise_std"]`` [n_graphs]; a model with a single level needs none.
    """
    reused = None if neighbour_lists is None else reused_edges(
        neighbour_lists, positions, [f.cell for f in frames], [f.pbc for f in frames])
    if reused is not None:  # every list reused as it stands: the whole batch in a few array operations
        edge_index, shifts = reused
        sizes = [len(pos) for pos in positions]
        pos_list, attr_list = list(positions), [frame.species for frame in frames]
        edge_list, shift_list = [edge_index], [shifts]
        batch_list = [np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)]
        ptr = [0, *np.cumsum(sizes).tolist()]
    else:
        pos_list, attr_list, edge_list, shift_list, batch_list = [], [], [], [], []
        ptr = [0]
        offset = 0
        for g, (pos, frame) in enumerate(zip(positions, frames)):
            if neighbour_lists is None:
                edge_index, unit_shifts = neighbour_graph(pos, frame.cell, frame.pbc, cutoff)
                shifts = unit_shifts @ frame.cell
            else:
                edge_index, shifts = neighbour_lists[g].edges(pos, frame.cell, frame.pbc, update=update_lists)
            pos_list.append(pos)
            attr_list.append(frame.species)
            edge_list.append(edge_index + offset)
            shift_list.append(shifts)
            batch_list.append(np.full(len(pos), g, dtype=np.int64))
            offset += len(pos)
            ptr.append(offset)
    species = torch.from_numpy(np.concatenate(attr_list))
    return {
        "positions": torch.as_tensor(np.concatenate(pos_list), dtype=dtype, device=device),
        "node_attrs": torch.nn.functional.one_hot(species, n_elements).to(dtype=dtype, device=device),
        "edge_index": torch.as_tensor(np.concatenate(edge_list, axis=1), dtype=torch.int64, device=device),
        "shifts": torch.as_tensor(np.concatenate(shift_list), dtype=dtype, device=device),
        "batch": torch.as_tensor(np.concatenate(batch_list), device=device),
        "ptr": torch.as_tensor(ptr, dtype=torch.int64, device=device),
        **({} if noise_std is None else {"noise_std": torch.as_tensor(list(noise_std), dtype=dtype, device=device)}),
    }


def prepare_data(
    frames,
    *,
    noise_std: Union[None, str, float, Sequence[float]],
    temperature_K: Optional[float] = None,
    atomic_numbers: Optional[Sequence[int]] = None,
    default_temperature_K: Optional[float] = None,
    priors: Sequence[Any] = (),
    initial_model: Any = None,
    skip_bonded_pairs: bool = False,
    default_noise_std: Optional[float] = None,
    default_extrapolation_order: Optional[int] = None,
    **model_options: Any,
) -> Tuple[ModelConfig, PhysicsConfig, List[Frame]]:
    """Check frames and derive a model's settings from them.

    ``frames``: a path ASE can read, a list of ``Atoms`` or pymatgen structures.
    ``noise_std``: sigma (Angstrom), one level or several (a ladder: the model takes sigma as an
    input and ``ModelConfig.noise_embedding`` defaults to ``min(levels - 1, 2)``), or ``"auto"``:
    the ladder :func:`ase_denoise.suggest.suggest_settings` derives from the frames.
    ``temperature_K``: K, else the frames' ``info["temperature_K"]`` (one temperature per data set),
    else ``default_temperature_K`` (a model being fine-tuned passes its own). ``atomic_numbers``: the
    element table to use (a model being fine-tuned keeps its own: every element of the frames must be
    in it); default: the elements of the frames. ``priors``: :class:`ase_denoise.priors.Prior`
    objects, or ``"repulsive_wall"`` for a wall fitted to the frames' closest approaches
    (:func:`ase_denoise.priors.fit_repulsive_wall`), ``"nonbonded_wall"`` for the same wall on the
    pairs the bonded priors in ``priors`` do not hold (:class:`~ase_denoise.priors.NonBondedWall`),
    ``"bonded"`` for harmonic bonds and angles of a molecule fitted by Boltzmann inversion
    (:func:`ase_denoise.priors.fit_bonded_priors`), or ``"dihedrals:4-6-8-14,6-8-14-16"`` for torsion
    free energies on those atom quadruples (0-based) fitted to the frames' dihedrals
    (:func:`ase_denoise.priors.fit_dihedral_priors`). ``model_options``: any other
    :class:`ModelConfig` field (``r_max``, which may be ``"auto"`` too, ``num_channels``, ``head``...);
    ``avg_num_neighbors`` is measured on the frames unless given.

    ``default_noise_std`` / ``default_extrapolation_order``: what the model's forces are by default
    (one trained level, or the extrapolation of that degree; :class:`PhysicsConfig`), stored with it.

    ``skip_bonded_pairs``: the ``auto`` ladder ignores the atom pairs bonded priors hold (training
    with ``TrainConfig.smoothed_priors`` takes their smoothing out of the target).

    ``initial_model``: a :class:`~ase_denoise.model.DenoiserMACE` to fine-tune. Its architecture is
    inherited, element table and ``avg_num_neighbors`` included (its weights depend on them; every
    element of the frames must be in its table); ``noise_std`` defaults to its levels (``None``) and
    the temperature, failing the frames', to its own.

    Returns the architecture, the physics (temperature, noise levels, the frames' periodicity,
    priors) and the frames converted for training.
    """
    from .priors import Prior, fit_bonded_priors, fit_dihedral_priors, fit_repulsive_wall, parse_dihedrals
    from .suggest import pairs_held_by_priors

    if initial_model is not None:
        inherited = initial_model.config.to_dict()
        atomic_numbers = inherited.pop("atomic_numbers")
        model_options = {**inherited, **model_options}
        if noise_std is None:  # the model's ladder, and with it the defaults it was given
            noise_std = initial_model.noise_levels
            if default_noise_std is None and default_extrapolation_order is None:
                default_noise_std = initial_model.physics.default_noise_std
                default_extrapolation_order = initial_model.physics.default_extrapolation_order
        default_temperature_K = initial_model.temperature_K
    if noise_std is None:
        raise ValueError("noise_std (sigma, Angstrom) is needed")

    atoms_list: List[Atoms] = read_frames(frames)
    stated = any("temperature_K" in a.info for a in atoms_list)
    if temperature_K is None and not stated:
        temperature_K = default_temperature_K
    temperature_K = data_temperature(atoms_list, temperature_K)
    pbc = data_pbc(atoms_list)
    model_options = dict(model_options)
    if (isinstance(noise_std, str) and noise_std == "auto") or model_options.get("r_max") == "auto":
        from .suggest import suggest_settings

        held = pairs_held_by_priors(priors, atoms_list) if skip_bonded_pairs else None
        suggestion = suggest_settings(atoms_list, names=model_options.get("bead_names"), exclude_pairs=held)
        for line in suggestion.reasoning:
            logger.info("suggested settings: %s", line)
        if isinstance(noise_std, str):
            noise_std = suggestion.noise_std
        if model_options.get("r_max") == "auto":
            model_options["r_max"] = suggestion.r_max
    if isinstance(noise_std, str):
        raise ValueError(f"noise_std={noise_std!r}: give sigma in Angstrom (one or several levels) or 'auto'")
    levels = (noise_std,) if isinstance(noise_std, (int, float)) else tuple(noise_std)
    if len(levels) > 1 and not model_options.get("noise_embedding"):
        model_options["noise_embedding"] = min(len(levels) - 1, 2)
    r_max = float(model_options.get("r_max", ModelConfig.r_max))
    for i, atoms in enumerate(atoms_list):
        check_atoms(atoms, r_max=r_max, what=f"frame {i}", atomic_numbers=atomic_numbers)
    numbers = sorted({int(z) for a in atoms_list for z in a.numbers}) if atomic_numbers is None else list(atomic_numbers)
    options = dict(model_options)
    avg = options.pop("avg_num_neighbors", None)
    config = ModelConfig(atomic_numbers=numbers, **options)
    converted = [to_frame(a, config.atomic_numbers) for a in atoms_list]
    config.avg_num_neighbors = float(avg or average_num_neighbors(converted, r_max))
    kT = PhysicsConfig(temperature_K=temperature_K, noise_std=levels).kT
    fitted = []
    for prior in priors:
        if isinstance(prior, str) and prior == "repulsive_wall":
            prior = fit_repulsive_wall(atoms_list, kT)
        elif isinstance(prior, str) and prior == "nonbonded_wall":
            held = pairs_held_by_priors(priors, atoms_list)
            if not held:
                raise ValueError("priors: 'nonbonded_wall' is a wall on the pairs that bonded priors do not hold; "
                                 "give it with them (e.g. priors=['bonded', 'nonbonded_wall'])")
            prior = fit_repulsive_wall(atoms_list, kT, exclude=held)
        elif isinstance(prior, str) and prior.startswith("dihedrals:"):
            prior = fit_dihedral_priors(atoms_list, kT, parse_dihedrals(prior.partition(":")[2]))
        chosen = fit_bonded_priors(atoms_list, kT) if isinstance(prior, str) and prior == "bonded" else [prior]
        for prior in chosen:
            if not isinstance(prior, Prior):
                raise ValueError(f"unknown prior {prior!r}: pass ase_denoise.priors.Prior objects, "
                                 "'repulsive_wall', 'nonbonded_wall', 'bonded' or 'dihedrals:i-j-k-l[,...]'")
            logger.info("prior: %s", prior.describe(model_options.get("bead_names")))
            fitted.append(prior.to_dict())
    physics = PhysicsConfig(temperature_K=temperature_K, noise_std=levels, pbc=pbc, priors=fitted,
                            default_noise_std=default_noise_std, default_extrapolation_order=default_extrapolation_order)
    return config, physics, converted
