"""From equilibrium frames to a checked force field in one call: ``ase_denoise.fit`` and ``ase-denoise fit``.

* :mod:`ase_denoise.fitting.system` - the kind of system read off the data (periodic, a molecule, a
  cluster; ions when charges are given) and the recipe that kind was validated with, each choice with
  its reason;
* :mod:`ase_denoise.fitting.pipeline` - the steps: plan, train, the label-free corrections that apply
  (each kept only where its MD check allows), validation against the data's own structure, the
  report; resumable from the run directory;
* :mod:`ase_denoise.fitting.report` - the Markdown report with its plots, and the summary for the model's card.

``train`` stays the low-level entry point; ``fit`` is the validated path with its defaults. (The stage
is ``ase_denoise.fitting`` so that ``ase_denoise.fit`` stays the function.)
"""

from .pipeline import FitResult, fit
from .system import SystemPlan, plan_system

__all__ = ["FitResult", "SystemPlan", "fit", "plan_system"]
