"""dlt sources, one package per source system.

Sources are pure dlt: they never import Prefect, so they can run in any
orchestrator, a notebook or a test. Each package documents its settings in its
README and resolves them from dlt config (``sources.<name>.*``).
"""
