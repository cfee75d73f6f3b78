"""The water study (benchmarks/water/README.md): importable as ``water.<script>`` with ``benchmarks/`` on ``sys.path``."""
