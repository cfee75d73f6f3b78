"""The ala2 study (benchmarks/ala2/README.md): importable as ``ala2.<script>`` with ``benchmarks/`` on ``sys.path``."""
