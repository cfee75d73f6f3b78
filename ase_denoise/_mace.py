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


@contextlib.contextmanager
def host_environment_kept(variable: str = TORCH_LOAD_VARIABLE) -> Iterator[None]:
    """Run a block (typically an import of mace or of a module that imports it) and then restore
    ``os.environ[variable]`` to what it was before: removed if it was unset, else its old value."""
    before = os.environ.get(variable)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


_printed = io.StringIO()
with host_environment_kept(), warnings.catch_warnings(), contextlib.redirect_stdout(_printed):
    # mace prints a cuequivariance notice to stdout and emits TorchScript warnings at import; e3nn
    # warns about the variable. A library prints nothing: the notice goes to the debug log.
    warnings.simplefilter("ignore")
    import mace  # noqa: F401  (sets the variable e3nn needs; must precede e3nn)
    from e3nn import o3  # noqa: F401
    from mace.modules.blocks import (  # noqa: F401
        EquivariantProductBasisBlock,
        LinearNodeEmbeddingBlock,
        LinearReadoutBlock,
        NonLinearReadoutBlock,
        RadialEmbeddingBlock,
        RealAgnosticInteractionBlock,
        RealAgnosticResidualInteractionBlock,
    )
    from mace.modules.utils import get_edge_vectors_and_lengths  # noqa: F401

for _line in _printed.getvalue().splitlines():
    logger.debug("mace at import: %s", _line)
