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

{% macro bigquery__json_field(col, key) -%}
    json_value({{ col }}, '$.{{ key }}')
{%- endmacro %}
