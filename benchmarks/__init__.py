"""Benchmark harness: learning curves, reports and throughput for sb3_pgnotes algorithms against SB3 baselines."""
