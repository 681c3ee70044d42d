"""Fixtures for tests, demos and benchmarks, kept out of the parsers.

``persons``: synthetic persons in the Market-1501 format (the ``synthetic`` data set's images).
``replicas``: a seeded replica of every supported data set in its real on-disk format, at its
published size (``reid.data.datasets.PUBLISHED``) or scaled down.
``fuzz``: the input fuzzer (wrong values for every config key, component keyword and tool argument).
"""
