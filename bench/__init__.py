"""Throughput benchmarks for the ingest stage, each measured against a plain-client baseline.

Why a package: ``python -m bench.run`` keeps the project root on ``sys.path`` so the
benchmark imports ``flows`` and ``dlt_sources`` exactly as the platform does.
"""
