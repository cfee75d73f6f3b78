"""The one place where ase_denoise imports mace and e3nn, leaving the host process as it found it.

``import mace`` (and again ``import mace.calculators``) sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
in ``os.environ``: from then on every plain ``torch.load`` *in the whole process* unpickles
arbitrary code. e3nn 0.4.4 needs that switch while it imports (it ``torch.load``s its own
constants file), so the imports below run with mace's setting and the host's value of the variable
(usually: unset) is put back as soon as they are done. Inside the package every ``torch.load``
passes ``weights_only=True`` explicitly, which wins over the variable either way.

Every other module takes mace and e3nn names from here; importing mace elsewhere would switch the
host's protection off again (``tests/test_security.py`` checks that it stays on).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from typing import Iterator

logger = logging.getLogger(__name__)

#: the environment variable mace sets at import
TORCH_LOAD_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


#: what importing mace (and torch's inductor through it) writes into ``os.environ``: put back afterwards
HOST_VARIABLES = (TORCH_LOAD_VARIABLE, "TORCHINDUCTOR_CACHE_DIR")


@contextlib.contextmanager
def host_environment_kept(variables=HOST_VARIABLES) -> Iterator[None]:
    """Run a block (typically an import of mace or of a module that imports it) and then restore each
    ``os.environ[variable]`` to what it was before: removed if it was unset, else its old value."""
    variables = (variables,) if isinstance(variables, str) else tuple(variables)
    before = {v: os.environ.get(v) for v in variables}
    try:
        yield
    finally:
        for variable, value in before.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


_printed = io.StringIO()
with host_environment_kept(), warnings.catch_warnings(), contextlib.redirect_stdout(_printed):
    # mace prints a cuequivariance notice to stdout and emits TorchScript warnings at import; e3nn
    # warns about the variable. A library prints nothing: the notice goes to the debug log.
    warnings.simplefilter("ignore")
    import mace  # noqa: F401  (sets the variable e3nn needs; must precede e3nn)
    from e3nn import get_optimization_defaults, o3, set_optimization_defaults  # noqa: F401
    from mace.modules.blocks import (  # noqa: F401
        EquivariantProductBasisBlock,
        LinearNodeEmbeddingBlock,
        LinearReadoutBlock,
        NonLinearReadoutBlock,
        RadialEmbeddingBlock,
        RealAgnosticInteractionBlock,
        RealAgnosticResidualInteractionBlock,
    )
    from mace.modules.symmetric_contraction import Contraction as _MaceContraction
    from mace.modules.utils import get_edge_vectors_and_lengths  # noqa: F401

for _line in _printed.getvalue().splitlines():
    logger.debug("mace at import: %s", _line)


@contextlib.contextmanager
def eager_e3nn_codegen() -> Iterator[None]:
    """Build e3nn modules with their generated code left as ``torch.fx`` modules, not TorchScript.

    e3nn scripts every generated tensor-product and linear kernel with ``torch.jit.script`` by
    default, which is about half of a model's construction time (1 s of 2 s for the argon zoo model:
    every load pays it) and buys nothing measurable here (training and force calls on CPU equally
    fast either way). MACE has the same switch for ``torch.compile``
    (``mace.tools.compile.disable_e3nn_codegen``), but it leaves the setting switched off when the
    block raises; this one restores e3nn's global setting on every exit.
    """
    before = get_optimization_defaults()["jit_script_fx"]
    set_optimization_defaults(jit_script_fx=False)
    try:
        yield
    finally:
        set_optimization_defaults(jit_script_fx=before)


class ContiguousContraction(_MaceContraction):
    """mace's ``Contraction`` (one irrep of a symmetric contraction) ending in ``reshape``.

    mace-torch 0.3.16 ends ``Contraction.forward`` with ``out.view(n, -1)``. At ``correlation=1`` the
    loop over lower orders is empty and ``out`` is the einsum's result as it comes, which for an L > 0
    target is not contiguous, so every forward fails ("view size is not compatible with input
    tensor's size and stride"); e.g. a vector head with ``max_ell=2, max_L=1, correlation=1``. The
    same computation with ``reshape`` (a copy only where ``view`` would fail): identical values, the
    same parameters and state dict."""

    def forward(self, x, y):  # x: [n, channels, irrep dim] node features, y: [n, n_elements]
        out = self.graph_opt_main(self.U_tensors(self.correlation), self.weights_max, x, y)
        for i, (weight, contract_weights, contract_features) in enumerate(
            zip(self.weights, self.contractions_weighting, self.contractions_features)
        ):
            c_tensor = contract_weights(self.U_tensors(self.correlation - i - 1), weight, y)
            out = contract_features(c_tensor + out, x)
        return out.reshape(out.shape[0], -1)  # [n, channels * irrep dim]


_CONTRACTION_PARTS = ("graph_opt_main", "U_tensors", "weights_max", "weights", "contractions_weighting",
                      "contractions_features")


def make_contractions_contiguous(module) -> int:
    """Turn the correlation-1 ``Contraction`` submodules of ``module`` (as built by mace) into
    :class:`ContiguousContraction` in place; only these instances change, never mace's class.
    Returns how many changed. A mace whose ``Contraction`` has other parts is left alone."""
    changed = 0
    for sub in module.modules():
        if type(sub) is _MaceContraction and getattr(sub, "correlation", None) == 1 and all(
            hasattr(sub, part) for part in _CONTRACTION_PARTS
        ):
            sub.__class__ = ContiguousContraction
            changed += 1
    return changed
