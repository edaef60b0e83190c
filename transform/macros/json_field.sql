{#- dlt lands nested objects as JSON (duckdb / bigquery) or VARIANT (snowflake); pull one key out as a string. -#}
{% macro json_field(col, key) -%}
    {{ return(adapter.dispatch('json_field', 'elt')(col, key)) }}
{%- endmacro %}

{% macro default__json_field(col, key) -%}
    json_extract_string({{ col }}, '$.{{ key }}')
{%- endmacro %}

{% macro duckdb__json_field(col, key) -%}
    json_extract_string({{ col }}, '$.{{ key }}')
{%- endmacro %}

{% macro snowflake__json_field(col, key) -%}
    {{ col }}:{{ key }}::string
{%- endmacro %}

{#- BigQuery loads a JSON column's jsonl value as it is, and dlt writes Arrow's JSON
    columns (text) as JSON strings: unwrap such a string before looking the key up. -#}
{% macro bigquery__json_field(col, key) -%}
    json_value(coalesce(safe.parse_json(json_value({{ col }})), {{ col }}), '$.{{ key }}')
{%- endmacro %}
