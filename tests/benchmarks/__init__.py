"""Speed benchmarks: run from the repository root, ``python -m tests.benchmarks.bench_NAME --help``.

They are not collected as tests (``bench_*.py``); ``test_benchmarks.py`` checks that each imports and has a
``main``, and ``tests/test_quality.py`` type-checks them. The README names each one beside the figures it printed.
"""
