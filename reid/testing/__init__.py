"""Fixtures for tests, demos and benchmarks, kept out of the parsers.

``replicas``: a seeded replica of every supported data set in its real on-disk format, at its
published size (``reid.data.datasets.PUBLISHED``) or scaled down, its persons drawn by the
generator of the ``synthetic`` data set (:mod:`reid.data.persons`, data, not a test fixture).
``fuzz``: the input fuzzer (wrong values for every config key, component keyword and tool argument).
"""
