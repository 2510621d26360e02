"""Studies and timings: ablate, latency, attention, vs_official, device_check (the root benchmarks.py benchmarks
the export formats)."""
