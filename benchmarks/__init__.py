"""Benchmarks: stcore's speed as ratios to bare PyTorch, review-query latency, the dashboard,
and accuracy with and without review. Run `python -m benchmarks.run [--quick]`."""
