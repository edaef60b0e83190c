{#- Stripe stores `created` as unix seconds; each warehouse spells the conversion differently. -#}
{% macro unix_to_timestamp(col) -%}
    {{ return(adapter.dispatch('unix_to_timestamp', 'elt')(col)) }}
{%- endmacro %}

{% macro default__unix_to_timestamp(col) -%}
    to_timestamp({{ col }})
{%- endmacro %}

{% macro duckdb__unix_to_timestamp(col) -%}
    to_timestamp(cast({{ col }} as bigint))
{%- endmacro %}

{% macro snowflake__unix_to_timestamp(col) -%}
    to_timestamp_tz(cast({{ col }} as bigint), 0)
{%- endmacro %}

{% macro bigquery__unix_to_timestamp(col) -%}
    timestamp_seconds(cast({{ col }} as int64))
{%- endmacro %}
