{#- Hours (2 decimals) from one timestamp to another; null when either is null. -#}
{% macro hours_between(start, end) -%}
    round({{ adapter.dispatch('seconds_between', 'elt')(start, end) }} / 3600.0, 2)
{%- endmacro %}

{% macro default__seconds_between(start, end) -%}
    epoch({{ end }} - {{ start }})
{%- endmacro %}

{% macro snowflake__seconds_between(start, end) -%}
    datediff('second', {{ start }}, {{ end }})
{%- endmacro %}

{% macro bigquery__seconds_between(start, end) -%}
    timestamp_diff({{ end }}, {{ start }}, second)
{%- endmacro %}
