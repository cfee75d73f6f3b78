"""The licl study (benchmarks/licl/README.md): importable as ``licl.<script>`` with ``benchmarks/`` on ``sys.path``."""
