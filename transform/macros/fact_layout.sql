{#-
    Physical layout of a fact table on the warehouses that have one; none elsewhere.

    day_partitioned: BigQuery only; day partitions cut the bytes, and so the cost, that a
    date-filtered query scans.
    clustered_by: BigQuery clusters on the keys queries filter on; Snowflake on the day,
    so date-range queries prune micro-partitions.

        config(partition_by=day_partitioned('ordered_at'),
               cluster_by=clustered_by(['customer_id'], ['to_date(ordered_at)']))
-#}
{% macro day_partitioned(field, data_type='timestamp') -%}
    {%- if target.type == 'bigquery' -%}
        {{ return({'field': field, 'data_type': data_type, 'granularity': 'day'}) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{% macro clustered_by(bigquery, snowflake) -%}
    {{ return({'bigquery': bigquery, 'snowflake': snowflake}.get(target.type)) }}
{%- endmacro %}
