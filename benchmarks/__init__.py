"""Studies and timings (ablate, latency, attention, vs_official, device_check); the root benchmarks.py is the format benchmark."""
