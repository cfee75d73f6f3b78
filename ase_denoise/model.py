"""The denoiser: MACE's own blocks with an equivariant per-atom vector head.

Parametrisation (where sigma and kT enter the forces; docs/design.md, "The estimator"):

* the network sees noisy positions ``x = r + N`` with ``N ~ Normal(0, sigma^2)`` per component
  (drawn in :mod:`ase_denoise.training.sampler`),
* it predicts the *unit-variance* target ``eps_hat ~ -N / sigma`` (:mod:`ase_denoise.training.losses`),
* so the Tweedie score estimate is ``g = sigma * eps_hat = sigma^2 grad log rho_sigma``,
* and the forces are ``F_hat = kT * g / sigma^2 = kT * eps_hat / sigma`` in eV/Angstrom
  (:func:`forces_from_output`), with ``kT = ase.units.kB * temperature_K``.

Two heads (``ModelConfig.head``):

``"vector"`` (default)
    MACE trunk that keeps ``1o`` features through every layer (as ``AtomicDipolesMACE`` does); each
    layer has a linear readout to ``1x1o`` and the per-layer vectors are summed.
``"edge"``
    MACE trunk whose last layer keeps only scalars (as MACE does for energies). The head is a
    symmetric pairwise vector field ``v_i = 1/avg_num_neighbors * sum_j w_ij * (r_i - r_j)/|r_i - r_j|``
    with ``w_ij = MLP(s_i + s_j, s_i * s_j, radial(|r_ij|)) * envelope(|r_ij|)`` where ``s`` are the
    scalar features of every layer. ``w_ij = w_ji`` so the predicted forces obey Newton's third law:
    the net force on a structure is exactly zero (as it is for the true score of any
    translation-invariant density).
``"energy"``
    MACE trunk with a scalar last layer and MACE's own energy readouts (a linear ``1x0e`` readout per
    layer, a gated MLP after the last), summed over atoms: a free energy ``A_sigma(x)`` in eV of the
    coarse-grained coordinates at the training state point, defined up to a constant
    (docs/energy-head.md). Forces are ``-dA/dx`` by autograd (a double backward in training) and the
    output is ``eps_hat = sigma * F / kT``. The network's sum is scaled by ``kT / sigma_ref``
    (eV/A), so its gradient is of order one like the other heads' outputs.

Several noise levels (docs/noise-ladder.md): ``ModelConfig.noise_embedding = p`` conditions the
network on sigma through its node attributes, so every level is a pass of its own and the sigma -> 0
forces are extrapolated through them (:mod:`ase_denoise.forces`). ``ModelConfig.noise_expansion = K``
keeps the network blind to sigma and has its head return K + 1 vectors per atom ``g_0 .. g_K``, the
coefficients of ``F_sigma = kT / sigma_ref * (g_0 + s^2 g_1 + ... + s^2K g_K)``, ``s = sigma / sigma_max``
(in a basis of polynomials orthonormal over the levels, :meth:`DenoiserMACE.expansion_basis`): one pass
gives every level, and the sum at sigma = 0 is the sigma -> 0 limit.

Batch format (MACE's conventions, built by :func:`ase_denoise.data.graphs.collate`): ``positions``
[n_nodes, 3], ``node_attrs`` one-hot [n_nodes, n_elements], ``edge_index`` [2, n_edges] as
(sender, receiver), ``shifts`` [n_edges, 3] (Cartesian, Angstrom) so that
``vector = positions[receiver] - positions[sender] + shifts``, ``batch`` [n_nodes], ``ptr``
[n_graphs + 1] and ``noise_std`` [n_graphs] (Angstrom: the noise level each graph is evaluated at).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ._mace import (
    EquivariantProductBasisBlock,
    LinearNodeEmbeddingBlock,
    LinearReadoutBlock,
    NonLinearReadoutBlock,
    RadialEmbeddingBlock,
    RealAgnosticInteractionBlock,
    RealAgnosticResidualInteractionBlock,
    eager_e3nn_codegen,
    get_edge_vectors_and_lengths,
    make_contractions_contiguous,
    o3,
)
from .config import ModelConfig, PhysicsConfig
from .forces import ForcesChoice, as_forces_choice, evaluation_levels
from .priors import Prior, prior_from_dict


def forces_from_output(eps_hat: torch.Tensor, noise_std: Any, kT: float) -> torch.Tensor:
    """Forces in eV/Angstrom from the network output: ``kT * eps_hat / sigma``.

    Equivalent to ``kT * g / sigma^2`` for the Tweedie output ``g = sigma * eps_hat`` (Angstrom).
    ``noise_std``: sigma in Angstrom, a number or a tensor broadcastable to ``eps_hat`` (per node).
    """
    return eps_hat * (kT / noise_std)


def expansion_coefficients(levels: Sequence[float], degree: int) -> torch.Tensor:
    """[degree + 1, degree + 1] float64: column j holds the coefficients (of ``1, s^2, ..., s^2K``,
    ``s = sigma / max(levels)``) of ``p_j``, polynomials of degree j orthonormal over ``levels``
    (``mean_levels p_i p_j = delta_ij``; Gram-Schmidt through a QR factorisation of the Vandermonde
    matrix, with a positive diagonal so the basis is unique)."""
    s2 = (np.asarray(levels, dtype=np.float64) / max(levels)) ** 2
    if degree == 0:
        return torch.ones(1, 1, dtype=torch.float64)
    _, r = np.linalg.qr(np.vander(s2, degree + 1, increasing=True))
    r = r * np.sign(np.diag(r))[:, None]  # the unique factor with a positive diagonal
    return torch.from_numpy(np.linalg.inv(r) * np.sqrt(len(s2)))


def hidden_irreps(num_channels: int, max_L: int) -> o3.Irreps:
    """MACE's hidden irreps ``Cx0e + Cx1o + Cx2e + ...`` up to ``max_L``."""
    return o3.Irreps(" + ".join(f"{num_channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(max_L + 1)))


class EdgeVectorHead(nn.Module):
    """Symmetric pairwise vector head: ``v_i = sum_j w_ij unit(r_i - r_j) / avg_num_neighbors``.

    Inputs: per-node scalars ``s`` [n_nodes, n_scalars], radial features [n_edges, num_bessel],
    envelope [n_edges, 1], unit vectors [n_edges, 3] (pointing sender -> receiver), edge_index.
    Output: [n_nodes, n_outputs, 3] (one weight per output and edge). ``w_ij`` depends on ``s_i + s_j`` and ``s_i * s_j``, so ``w_ij = w_ji``.
    """

    def __init__(self, n_scalars: int, num_bessel: int, hidden: List[int], avg_num_neighbors: float,
                 n_outputs: int = 1):
        super().__init__()
        sizes = [2 * n_scalars + num_bessel] + list(hidden) + [n_outputs]
        layers: List[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.SiLU())
        self.mlp = nn.Sequential(*layers)
        self.avg_num_neighbors = float(avg_num_neighbors)

    def forward(
        self,
        scalars: torch.Tensor,  # [n_nodes, n_scalars]
        radial: torch.Tensor,  # [n_edges, num_bessel]
        envelope: torch.Tensor,  # [n_edges, 1]
        unit_vectors: torch.Tensor,  # [n_edges, 3]
        edge_index: torch.Tensor,  # [2, n_edges]
    ) -> torch.Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        s_i, s_j = scalars[receiver], scalars[sender]
        w = self.mlp(torch.cat([s_i + s_j, s_i * s_j, radial], dim=-1)) * envelope  # [n_edges, n_outputs]
        out = torch.zeros(scalars.shape[0], w.shape[-1], 3, dtype=unit_vectors.dtype, device=unit_vectors.device)
        out.index_add_(0, receiver, w.unsqueeze(-1) * unit_vectors.unsqueeze(1))
        return out / self.avg_num_neighbors  # [n_nodes, n_outputs, 3]


class DenoiserMACE(nn.Module):
    """MACE backbone + vector noise head; ``forward`` returns ``eps_hat`` [n_nodes, 3] (unitless).

    ``config``: the architecture (:class:`~ase_denoise.config.ModelConfig`); ``physics``: the
    temperature and noise level(s) of the training data (:class:`~ase_denoise.config.PhysicsConfig`).
    Use :meth:`forces` for eV/Angstrom. Build in float32 (default) and convert with
    ``model.to(torch.float64)``; construction never touches torch's global default dtype.
    Module names (``node_embedding``, ``radial_embedding``, ``spherical_harmonics``,
    ``interactions``, ``products``) match ``mace.modules.MACE`` so backbone tensors transfer.

    ``metadata``: what the model file said (:func:`ase_denoise.checkpoint.load_model` fills it);
    ``provenance``: where the weights came from (e.g. a MACE model, :mod:`ase_denoise.integrations.mace`).
    """

    def __init__(self, config: ModelConfig, physics: PhysicsConfig):
        super().__init__()
        config.validate()
        physics.validate()
        if len(physics.noise_std) > 1 and config.noise_embedding < 1 and config.noise_expansion < 1:
            raise ValueError(
                f"a model for several noise levels {physics.noise_std} A needs sigma as an input "
                "(ModelConfig.noise_embedding >= 1) or an expansion in sigma^2 (ModelConfig.noise_expansion >= 1)"
            )
        if config.noise_expansion >= len(physics.noise_std):
            raise ValueError(
                f"an expansion of degree {config.noise_expansion} in sigma^2 has {config.noise_expansion + 1} "
                f"coefficients: it needs more than {config.noise_expansion} noise levels, got {list(physics.noise_std)}"
            )
        self.config = config
        self.physics = physics
        self.metadata: Dict[str, Any] = {}
        self.provenance: Dict[str, Any] = {}
        self.priors: List[Prior] = [prior_from_dict(d) for d in physics.priors]
        self._expansion_coefficients = expansion_coefficients(physics.noise_std, config.noise_expansion)
        with warnings.catch_warnings(), eager_e3nn_codegen():  # scripting the kernels warned ~45 times; kept for other e3nn versions
            warnings.simplefilter("ignore")
            self._build_blocks(config)

    def _build_blocks(self, config: ModelConfig) -> None:
        n_elements = len(config.atomic_numbers) * (config.noise_embedding + 1)  # node_attrs width
        n_terms = config.noise_expansion + 1  # outputs per head: the coefficients g_0 .. g_K of the expansion
        C = config.num_channels
        self.register_buffer("atomic_numbers", torch.tensor(config.atomic_numbers, dtype=torch.int64))
        node_attr_irreps = o3.Irreps(f"{n_elements}x0e")
        node_feats_irreps = o3.Irreps(f"{C}x0e")
        hidden = hidden_irreps(C, config.max_L)
        sh_irreps = o3.Irreps.spherical_harmonics(config.max_ell)
        interaction_irreps = (sh_irreps * C).sort()[0].simplify()

        self.node_embedding = LinearNodeEmbeddingBlock(irreps_in=node_attr_irreps, irreps_out=node_feats_irreps)
        self.radial_embedding = RadialEmbeddingBlock(
            r_max=config.r_max, num_bessel=config.num_bessel, num_polynomial_cutoff=config.num_polynomial_cutoff
        )
        edge_feats_irreps = o3.Irreps(f"{self.radial_embedding.out_dim}x0e")
        self.spherical_harmonics = o3.SphericalHarmonics(sh_irreps, normalize=True, normalization="component")

        self.interactions = nn.ModuleList()
        self.products = nn.ModuleList()
        self.vector_readouts = nn.ModuleList()
        self.energy_readouts = nn.ModuleList()
        self.layer_irreps: List[o3.Irreps] = []
        in_irreps = node_feats_irreps
        for layer in range(config.num_interactions):
            last = layer == config.num_interactions - 1
            # MACE keeps only scalars after its last layer; the vector head needs 1o there.
            out_irreps = o3.Irreps(f"{C}x0e") if (last and config.head != "vector") else hidden
            cls = RealAgnosticInteractionBlock if layer == 0 else RealAgnosticResidualInteractionBlock
            inter = cls(
                node_attrs_irreps=node_attr_irreps,
                node_feats_irreps=in_irreps,
                edge_attrs_irreps=sh_irreps,
                edge_feats_irreps=edge_feats_irreps,
                target_irreps=interaction_irreps,
                hidden_irreps=out_irreps,
                avg_num_neighbors=config.avg_num_neighbors,
                radial_MLP=list(config.radial_mlp),
            )
            self.interactions.append(inter)
            product = EquivariantProductBasisBlock(
                node_feats_irreps=inter.target_irreps,
                target_irreps=out_irreps,
                correlation=config.correlation,
                num_elements=n_elements,
                use_sc=layer > 0,
            )
            make_contractions_contiguous(product)  # correlation 1 fails in mace 0.3.16 otherwise
            self.products.append(product)
            if config.head == "vector":
                self.vector_readouts.append(LinearReadoutBlock(out_irreps, o3.Irreps(f"{n_terms}x1o")))
            elif config.head == "energy":  # as mace.modules.MACE: linear readouts, a gated MLP last
                self.energy_readouts.append(
                    NonLinearReadoutBlock(out_irreps, o3.Irreps(f"{config.energy_mlp}x0e"), torch.nn.functional.silu,
                                          irrep_out=o3.Irreps(f"{n_terms}x0e"))
                    if last else LinearReadoutBlock(out_irreps, o3.Irreps(f"{n_terms}x0e"))
                )
            self.layer_irreps.append(out_irreps)
            in_irreps = out_irreps

        if config.head == "edge":
            self.edge_head = EdgeVectorHead(
                n_scalars=C * config.num_interactions,
                num_bessel=config.num_bessel,
                hidden=config.edge_mlp,
                avg_num_neighbors=config.avg_num_neighbors,
                n_outputs=n_terms,
            )

    @property
    def noise_levels(self) -> Tuple[float, ...]:
        """The trained noise level(s) sigma, Angstrom, ascending."""
        return tuple(self.physics.noise_std)

    @property
    def temperature_K(self) -> float:
        """Temperature of the training data, K."""
        return float(self.physics.temperature_K)

    @property
    def kT(self) -> float:
        """k_B T of the training data, eV."""
        return self.physics.kT

    @property
    def noise_reference(self) -> float:
        """sigma_ref, Angstrom: the geometric mean of the trained levels (the level itself for one)."""
        levels = self.noise_levels
        return float(math.exp(sum(math.log(s) for s in levels) / len(levels)))

    def noise_coordinate(self, sigma: torch.Tensor) -> torch.Tensor:
        """``u = log(sigma / sigma_ref) / log(sigma_max / sigma_min)``: about -0.5 .. 0.5 over the ladder."""
        levels = self.noise_levels
        span = math.log(levels[-1] / levels[0]) if len(levels) > 1 else 1.0
        return torch.log(sigma / self.noise_reference) / span

    def conditioned_attrs(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``node_attrs`` [n_nodes, n_elements * (p + 1)]: the element one-hot times ``(1, u, ..., u^p)``
        (the noise conditioning, ``ModelConfig.noise_embedding = p``); the plain one-hot for p = 0."""
        one_hot = data["node_attrs"]  # [n_nodes, n_elements]
        p = self.config.noise_embedding
        if p == 0:
            return one_hot
        u = self.noise_coordinate(self.node_noise_std(data))  # [n_nodes, 1]
        powers = torch.cat([torch.ones_like(u)] + [u**j for j in range(1, p + 1)], dim=-1)  # [n_nodes, p + 1]
        return (one_hot.unsqueeze(-1) * powers.unsqueeze(1)).reshape(one_hot.shape[0], -1)

    def _trunk(
        self, data: Dict[str, torch.Tensor], positions: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """MACE's interaction + product layers at ``positions``: the node features of every layer,
        edge vectors [n_edges, 3], lengths [n_edges, 1] and radial features [n_edges, num_bessel]."""
        node_attrs = self.conditioned_attrs(data)
        edge_index = data["edge_index"]
        vectors, lengths = get_edge_vectors_and_lengths(
            positions=positions, edge_index=edge_index, shifts=data["shifts"]
        )  # [n_edges, 3], [n_edges, 1]
        node_feats = self.node_embedding(node_attrs)  # [n_nodes, C]
        edge_attrs = self.spherical_harmonics(vectors)  # [n_edges, (max_ell+1)^2]
        edge_feats, _ = self.radial_embedding(lengths, data["node_attrs"], edge_index, self.atomic_numbers)  # [n_edges, num_bessel]
        layers: List[torch.Tensor] = []
        for layer, (interaction, product) in enumerate(zip(self.interactions, self.products)):
            node_feats, sc = interaction(
                node_attrs=node_attrs,
                node_feats=node_feats,
                edge_attrs=edge_attrs,
                edge_feats=edge_feats,
                edge_index=edge_index,
                first_layer=(layer == 0),
            )
            node_feats = product(node_feats=node_feats, sc=sc, node_attrs=node_attrs)  # [n_nodes, irreps]
            layers.append(node_feats)
        return layers, vectors, lengths, edge_feats

    def forward(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Return ``eps_hat`` [n_nodes, 3], the predicted ``-noise/sigma`` (unitless).

        A multi-level model scales its last sum by ``sigma / sigma_ref``: the unit-variance output is
        ``sigma * grad log rho_sigma``, so the network itself only has to represent
        ``sigma_ref * grad log rho_sigma``, which changes slowly with sigma. The energy head's output
        is ``sigma * F / kT`` with ``F = -dA/dx`` (the factor sigma is explicit there)."""
        if self.config.head == "energy":
            _, forces = self.free_energy_and_forces(data)
            return forces * (self.node_noise_std(data) / self.kT)
        out = self._reduced_output(data)
        if self.config.noise_embedding or self.config.noise_expansion:
            out = out * (self.node_noise_std(data) / self.noise_reference)
        return out

    def head_outputs(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The vector or edge head's raw outputs [n_nodes, K + 1, 3] (``K = noise_expansion``; one output,
        K = 0, for a single level or a conditioned ladder): for an expansion model the coefficients
        ``g_0 .. g_K`` of ``F_sigma`` in units of ``kT / sigma_ref`` (in the basis of :meth:`expansion_basis`)."""
        layers, vectors, lengths, edge_feats = self._trunk(data, data["positions"])
        n_nodes, n_terms = data["positions"].shape[0], self.config.noise_expansion + 1
        if self.config.head == "vector":
            out = torch.zeros(n_nodes, 3 * n_terms, dtype=data["positions"].dtype, device=data["positions"].device)
            for readout, node_feats in zip(self.vector_readouts, layers):
                out = out + readout(node_feats)  # [n_nodes, 3 (K + 1)]: K + 1 vectors, one after the other
        elif self.config.head == "edge":
            C = self.config.num_channels
            scalars = torch.cat([node_feats[:, :C] for node_feats in layers], dim=-1)  # the Cx0e block comes first
            envelope = self.radial_embedding.cutoff_fn(lengths)  # [n_edges, 1]
            out = self.edge_head(scalars, edge_feats, envelope, vectors / lengths, data["edge_index"])
        else:
            raise ValueError("head_outputs is the vector or edge head's; the energy head's are free_energy_and_forces")
        return out.reshape(n_nodes, n_terms, 3)

    def _reduced_output(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """[n_nodes, 3]: ``eps_hat`` for one level, ``sigma_ref F_sigma / kT`` for a ladder (the unit
        output divided by ``sigma / sigma_ref``; an expansion model's at sigma = 0 is the sigma -> 0 term)."""
        terms = self.head_outputs(data)  # [n_nodes, K + 1, 3]
        if not self.config.noise_expansion:
            return terms[:, 0]
        basis = self.expansion_basis(self.node_noise_std(data))  # [n_nodes, K + 1]
        return (terms * basis.unsqueeze(-1)).sum(dim=1)

    def expansion_basis(self, sigma: torch.Tensor) -> torch.Tensor:
        """``p_0(s^2) .. p_K(s^2)`` [n, K + 1] for sigma [n, 1] (Angstrom), ``s = sigma / sigma_max``: the
        weights of an expansion model's K + 1 outputs at noise level sigma (``noise_expansion = K``).
        ``p_j`` is a polynomial of degree j in ``s^2``, the ``p_j`` orthonormal over the trained levels
        (mean of ``p_i p_j`` over the levels = delta_ij), so the outputs are fitted as well-conditioned
        least squares; with plain powers ``1, s^2, s^4`` the higher terms learn slowly and the sigma -> 0
        term stays near the levels' mean (docs/noise-ladder.md, "The expansion head"). sigma = 0 gives
        the basis at ``s = 0``: the sigma -> 0 forces are ``sum_j p_j(0) g_j``."""
        s2 = (sigma / max(self.noise_levels)) ** 2
        powers = torch.cat([s2**k for k in range(self.config.noise_expansion + 1)], dim=-1)  # [n, K + 1]
        return powers @ torch.as_tensor(self._expansion_coefficients, dtype=powers.dtype, device=powers.device)

    @property
    def energy_scale(self) -> float:
        """``kT / sigma_ref`` (eV/A): the energy head's ``A`` is this times the summed readouts."""
        return self.kT / self.noise_reference

    def free_energy_and_forces(self, data: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Energy head: the network's free energy ``A`` per graph [n_graphs] (eV, up to a constant;
        priors not included) and its forces ``-dA/dx`` [n_nodes, 3] (eV/A), at each graph's sigma.

        Works under ``torch.no_grad()`` (the positions' gradient is taken inside). When the caller
        records gradients (training), the forces keep their graph for a double backward; otherwise
        both outputs are detached."""
        if self.config.head != "energy":
            raise ValueError(f"free_energy_and_forces needs head='energy'; this model's head is {self.config.head!r}")
        keep_graph = torch.is_grad_enabled()
        # inference: record no graph through the weights (about a quarter of the call's time); the
        # flags are put back before returning, also on errors
        frozen = [] if keep_graph else [p for p in self.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                positions = data["positions"]
                if not positions.requires_grad:
                    positions = positions.detach().requires_grad_(True)
                layers, _, _, _ = self._trunk(data, positions)
                node_energy = sum(readout(f) for readout, f in zip(self.energy_readouts, layers))  # [n_nodes, K + 1]
                if self.config.noise_expansion:  # A_sigma = sum_j p_j(s^2) A_j; at sigma = 0 the sigma -> 0 one
                    node_energy = (node_energy * self.expansion_basis(self.node_noise_std(data))).sum(-1, keepdim=True)
                node_energy = node_energy.squeeze(-1) * self.energy_scale  # [n_nodes], eV
                n_graphs = data["ptr"].shape[0] - 1
                energy = torch.zeros(n_graphs, dtype=node_energy.dtype, device=node_energy.device)
                energy = energy.index_add(0, data["batch"], node_energy)  # [n_graphs]
                (gradient,) = torch.autograd.grad(
                    energy.sum(), positions, create_graph=keep_graph, allow_unused=True, materialize_grads=True
                )  # [n_nodes, 3]
        finally:
            for p in frozen:
                p.requires_grad_(True)
        forces = -gradient
        if not keep_graph:
            energy, forces = energy.detach(), forces.detach()
        return energy, forces

    def node_noise_std(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """sigma of every node [n_nodes, 1], Angstrom, from the per-graph ``data["noise_std"]``
        (a model trained at a single level needs no ``data["noise_std"]``: it is that level)."""
        if "noise_std" not in data:
            if len(self.noise_levels) > 1:
                raise ValueError(
                    f"this model was trained at several noise levels {self.noise_levels} A: "
                    "data['noise_std'] must say which level each graph is evaluated at"
                )
            return torch.full_like(data["positions"][:, :1], self.noise_levels[0])
        return data["noise_std"][data["batch"]].unsqueeze(-1)

    def forces(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Forces in eV/Angstrom [n_nodes, 3], ``kT * eps_hat / sigma`` at each graph's noise level
        (the energy head: ``-dA/dx`` itself). An expansion model (``noise_expansion``) also takes
        ``noise_std`` 0: its sigma -> 0 forces ``F_0``."""
        if self.config.head == "energy":
            return self.free_energy_and_forces(data)[1]
        if "noise_std" not in data:  # one level: the scale is one number (bit-identical to format 1)
            self.node_noise_std(data)  # refuses a multi-level model
            return forces_from_output(self(data), self.noise_levels[0], self.kT)
        if self.config.noise_expansion:
            # kT * eps_hat / sigma with eps_hat = (sigma / sigma_ref) * reduced output: the sigma's cancel, so
            # sigma = 0 is allowed and gives the sigma -> 0 forces, in one pass
            return forces_from_output(self._reduced_output(data), self.noise_reference, self.kT)
        return forces_from_output(self(data), self.node_noise_std(data), self.kT)


def build_model(
    config: ModelConfig, physics: PhysicsConfig, dtype: torch.dtype = torch.float32, seed: Optional[int] = None
) -> DenoiserMACE:
    """Build a :class:`DenoiserMACE` in ``dtype`` without touching torch's global default dtype.

    ``seed``: initialise the weights from this seed without touching torch's global generator
    (``None``: draw from the global generator, as ``nn.Module`` does).
    """
    if seed is None:
        return DenoiserMACE(config, physics).to(dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DenoiserMACE(config, physics).to(dtype)


def copy_model(model: DenoiserMACE, physics: Optional[PhysicsConfig] = None, dtype: Optional[torch.dtype] = None,
               device: Optional[Union[str, torch.device]] = None) -> DenoiserMACE:
    """A copy of ``model`` (its weights, metadata and provenance), optionally with other ``physics``
    (the same levels: the weights depend on them) or in another ``dtype``/on another ``device``;
    ``model`` itself is not changed. Rebuilt and loaded, not ``copy.deepcopy``-ed: a deep copy
    recompiles every e3nn kernel with TorchScript (about a second and a hundred warnings), and
    building touches no global RNG here (the fresh weights are overwritten anyway)."""
    parameter = next(model.parameters())
    out = build_model(model.config, model.physics if physics is None else physics, parameter.dtype, seed=0)
    out.load_state_dict(model.state_dict())
    out.metadata, out.provenance = copy.deepcopy(model.metadata), copy.deepcopy(model.provenance)
    out.priors = [prior_from_dict(p.to_dict()) for p in model.priors] if physics is None else out.priors
    out.train(model.training)
    return out.to(device=device or parameter.device, dtype=dtype or parameter.dtype)


def with_prior(model: DenoiserMACE, prior: Prior) -> DenoiserMACE:
    """A copy of ``model`` with ``prior`` added (one of the same ``kind`` replaced), saved with it and
    shown in its card; ``model`` itself is not changed. For priors that act at inference only (a
    wall, a pair table: ``in_residual`` False) the weights need no retraining; a residual prior
    changes what the network should have learned and is refused."""
    if prior.in_residual:
        raise ValueError(f"a {prior.kind!r} prior is learned as a residual: train with it instead of adding it "
                         "to a trained model")
    priors = [p for p in model.priors if p.kind != prior.kind] + [prior]
    out = copy_model(model, physics=replace(model.physics, priors=[p.to_dict() for p in priors]))
    out.priors = priors
    return out


def with_default_forces(model: DenoiserMACE, forces: ForcesChoice) -> DenoiserMACE:
    """A copy of ``model`` that returns ``forces`` by default (stored in its physics and saved with it;
    refused if the model cannot return them); ``model`` itself is not changed."""
    evaluation_levels(model, as_forces_choice(forces))
    return copy_model(model, physics=model.physics.with_default_forces(forces))
