"""ase_denoise: learn a force field from atomic coordinates alone."""

__version__ = "0.1.0"
