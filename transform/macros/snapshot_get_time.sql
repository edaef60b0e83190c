{#-
    The time dbt stamps on a snapshot version it closes for a deleted row (hard_deletes:
    invalidate). dbt-duckdb casts it to a naive timestamp, but the validity columns hold
    the sources' updated_at, which is timestamptz: dbt warned on every run that the types
    differ, and the closing time was read in the session's time zone. Keep the zone.
-#}
{% macro duckdb__snapshot_get_time() -%}
    current_timestamp
{%- endmacro %}
