"""Benchmarks: edge throughput, the cost of rendering a stack, the cost of the test suites (`python -m benchmarks`).

Results are measured and printed, never asserted: see benchmarks/README.md.
"""
