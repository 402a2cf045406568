"""Benchmarks that start their own local stack and print ratios measured side by side in one run."""
