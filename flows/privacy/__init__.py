"""Privacy by design: where people are in the warehouse, and erasing or exporting one of them.

- ``places``: the PII map, from the sources' declarations (dlt column hints), dbt ``meta``
  and what the warehouse holds;
- ``subjects``: a person named by an identifier, and the identifiers linked to it;
- ``matching``: the SQL finding their rows, per warehouse;
- ``erasure``: ``elt privacy forget`` (tombstones, delete or redact, publish, proof);
- ``tombstones``: what keeps a forgotten person out of every later load;
- ``export``: ``elt privacy export`` (right of access);
- ``command``: the CLI.
"""
