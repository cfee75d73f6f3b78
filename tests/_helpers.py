"""Small shared pieces of the test suite (imported as ``from _helpers import ...``; pytest puts
``tests/`` on ``sys.path``). Fixtures live in ``conftest.py``; this module holds plain values and
functions that several test files need."""

# The smallest model that still exercises every block: fast enough for tests that train.
TINY = dict(head="edge", r_max=3.0, num_channels=4, max_L=0, max_ell=1, num_interactions=1, correlation=1,
            radial_mlp=[8], edge_mlp=[8])


def rewrite_metadata(src, dst, **changes):
    """Copy the safetensors model file ``src`` to ``dst`` with metadata entries replaced by ``changes``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta.update(changes)
    save_file(tensors, str(dst), metadata=meta)
