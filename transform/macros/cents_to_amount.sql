{#- Stripe amounts are integer minor units (cents); marts want decimal(18,2) major units. -#}
{% macro cents_to_amount(col) -%}
    {{ return(adapter.dispatch('cents_to_amount', 'elt')(col)) }}
{%- endmacro %}

{% macro default__cents_to_amount(col) -%}
    cast(cast({{ col }} as decimal(18, 2)) / 100 as decimal(18, 2))
{%- endmacro %}

{#- DuckDB turns decimal division into DOUBLE; multiplying keeps the value exact. -#}
{% macro duckdb__cents_to_amount(col) -%}
    cast(cast({{ col }} as decimal(18, 0)) * 0.01 as decimal(18, 2))
{%- endmacro %}

{% macro snowflake__cents_to_amount(col) -%}
    cast({{ col }} / 100 as decimal(18, 2))
{%- endmacro %}

{% macro bigquery__cents_to_amount(col) -%}
    cast(cast({{ col }} as numeric) / 100 as numeric(18, 2))
{%- endmacro %}
