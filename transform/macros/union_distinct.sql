{#- Set union without duplicates. BigQuery rejects a bare `union` ("Syntax error:
    Expected DISTINCT or ALL for Union"); Snowflake has no `union distinct`. -#}
{% macro union_distinct() -%}
    {{ return(adapter.dispatch('union_distinct', 'elt')()) }}
{%- endmacro %}

{% macro default__union_distinct() -%}
    union
{%- endmacro %}

{% macro bigquery__union_distinct() -%}
    union distinct
{%- endmacro %}
