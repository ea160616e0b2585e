"""Benchmark datasets, one small adapter module each: ``record_to_sample(record, index) -> Sample``."""
