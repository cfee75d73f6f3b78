"""``python -m ase_denoise.cli`` (e.g. under ``torchrun``): the ``ase-denoise`` command."""

import sys

from . import main

sys.exit(main())
