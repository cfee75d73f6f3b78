"""Check frames and derive a model's settings from them (:func:`prepare_data`)."""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence, Tuple, Union

from ase import Atoms

from ..config import ModelConfig, PhysicsConfig
from ..data.frames import (
    Frame,
    check_atoms,
    check_kinetic_temperature,
    data_pbc,
    data_temperature,
    describe_periodicity,
    read_frames,
    refuse_overlaps,
    to_frame,
)
from ..data.neighbours import average_num_neighbors
from ..forces import ForcesChoice, as_forces_choice
from ..priors.specs import PriorSpec, fit_priors, pairs_held_by_priors, parse_prior
from .suggest import suggest_settings

logger = logging.getLogger(__name__)


def prepare_data(
    frames,
    *,
    noise_std: Union[None, str, float, Sequence[float]],
    temperature_K: Optional[float] = None,
    atomic_numbers: Optional[Sequence[int]] = None,
    default_temperature_K: Optional[float] = None,
    priors: Sequence[PriorSpec] = (),
    initial_model: Any = None,
    skip_bonded_pairs: bool = False,
    default_forces: Optional[ForcesChoice] = None,
    **model_options: Any,
) -> Tuple[ModelConfig, PhysicsConfig, List[Frame]]:
    """Check frames and derive a model's settings from them.

    ``frames``: a path ASE can read, a list of ``Atoms`` or pymatgen structures.
    ``noise_std``: sigma (Angstrom), one level or several (a ladder: the model takes sigma as an
    input and ``ModelConfig.noise_embedding`` defaults to ``min(levels - 1, 2)`` unless
    ``noise_expansion`` is given), or ``"auto"``
    (the default, ``None``): the ladder :func:`ase_denoise.training.suggest.suggest_settings` derives
    from the frames.
    ``temperature_K``: K, else the frames' ``info["temperature_K"]`` (one temperature per data set),
    else ``default_temperature_K`` (a model being fine-tuned passes its own). ``atomic_numbers``: the
    element table to use (a model being fine-tuned keeps its own: every element of the frames must be
    in it); default: the elements of the frames. ``priors``: :class:`ase_denoise.priors.Prior`
    objects or short forms (``"wall"``, ``"bonded"``, ``"nonbonded-wall"``, ``"dihedrals:4-6-8-14"``,
    ``"ewald:Li=1,Cl=-1,eps=94"``...: :mod:`ase_denoise.priors.specs`), the data-dependent ones fitted
    to the frames (:func:`~ase_denoise.priors.specs.fit_priors`). ``model_options``: any other
    :class:`ModelConfig` field (``r_max``, which may be ``"auto"`` too, ``num_channels``, ``head``...);
    ``avg_num_neighbors`` is measured on the frames unless given.

    ``default_forces``: what the model's forces are by default (:class:`~ase_denoise.forces.ForcesChoice`:
    one trained level, or the extrapolation of a degree), stored with it (:class:`PhysicsConfig`).

    ``skip_bonded_pairs``: the ``auto`` ladder ignores the atom pairs bonded priors hold (training
    with ``TrainConfig.smoothed_priors`` takes their smoothing out of the target).

    ``initial_model``: a :class:`~ase_denoise.model.DenoiserMACE` to fine-tune. Its architecture is
    inherited, element table and ``avg_num_neighbors`` included (its weights depend on them; every
    element of the frames must be in its table); ``noise_std`` defaults to its levels (``None``) and
    the temperature, failing the frames', to its own.

    Returns the architecture, the physics (temperature, noise levels, the frames' periodicity,
    priors) and the frames converted for training.
    """
    priors = [parse_prior(p) for p in priors]  # an unknown form is refused before any data are read
    if initial_model is not None:
        inherited = initial_model.config.to_dict()
        atomic_numbers = inherited.pop("atomic_numbers")
        model_options = {**inherited, **model_options}
        if noise_std is None:  # the model's ladder, and with it the defaults it was given
            noise_std = initial_model.noise_levels
            if as_forces_choice(default_forces).is_default:
                default_forces = initial_model.physics.default_forces
        default_temperature_K = initial_model.temperature_K
    if noise_std is None:  # the default: the ladder read off the data
        noise_std = "auto"

    atoms_list: List[Atoms] = read_frames(frames)
    stated = any("temperature_K" in a.info for a in atoms_list)
    if temperature_K is None and not stated:
        temperature_K = default_temperature_K
    temperature_K = data_temperature(atoms_list, temperature_K)
    check_kinetic_temperature(atoms_list, temperature_K)
    pbc = data_pbc(atoms_list)
    periodicity, suspicious = describe_periodicity(atoms_list)
    (logger.warning if suspicious else logger.info)("data: %d frames, %s", len(atoms_list), periodicity)
    model_options = dict(model_options)
    if (isinstance(noise_std, str) and noise_std == "auto") or model_options.get("r_max") == "auto":
        held = pairs_held_by_priors(priors, atoms_list) if skip_bonded_pairs else None
        suggestion = suggest_settings(atoms_list, names=model_options.get("bead_names"), exclude_pairs=held)
        for line in suggestion.reasoning:
            logger.info("settings from the data: %s", line)
        if isinstance(noise_std, str):
            noise_std = suggestion.noise_std
        if model_options.get("r_max") == "auto":
            model_options["r_max"] = suggestion.r_max
    if isinstance(noise_std, str):
        raise ValueError(f"noise_std={noise_std!r}: give sigma in Angstrom (one or several levels) or 'auto'")
    levels = (noise_std,) if isinstance(noise_std, (int, float)) else tuple(noise_std)
    if len(levels) > 1 and not model_options.get("noise_embedding") and not model_options.get("noise_expansion"):
        model_options["noise_embedding"] = min(len(levels) - 1, 2)
    r_max = float(model_options.get("r_max", ModelConfig.r_max))
    for i, atoms in enumerate(atoms_list):
        check_atoms(atoms, r_max=r_max, what=f"frame {i}", atomic_numbers=atomic_numbers)
        refuse_overlaps(atoms.positions, atoms.cell.array, atoms.pbc, what=f"frame {i}")
    numbers = sorted({int(z) for a in atoms_list for z in a.numbers}) if atomic_numbers is None else list(atomic_numbers)
    options = dict(model_options)
    avg = options.pop("avg_num_neighbors", None)
    config = ModelConfig(atomic_numbers=numbers, **options)
    converted = [to_frame(a, config.atomic_numbers) for a in atoms_list]
    config.avg_num_neighbors = float(avg or average_num_neighbors(converted, r_max))
    kT = PhysicsConfig(temperature_K=temperature_K, noise_std=levels).kT
    fitted = []
    for prior in fit_priors(priors, atoms_list, kT):
        logger.info("prior: %s", prior.describe(model_options.get("bead_names")))
        fitted.append(prior.to_dict())
    default_forces = as_forces_choice(default_forces)
    physics = PhysicsConfig(temperature_K=temperature_K, noise_std=levels, pbc=pbc, priors=fitted,
                            default_noise_std=default_forces.noise_std,
                            default_extrapolation_order=default_forces.extrapolation_order)
    return config, physics, converted
