"""Benchmarks: send throughput, worker throughput, reminder fan-out, cold start and memory (`make bench`)."""
