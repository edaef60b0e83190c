{#-
    Incremental filter on dlt load ids: true for rows (re)loaded since this model's
    last build, minus a lookback (var fact_lookback_hours, default 72).

    Why load ids and not updated_at: a fact row changes when any of its inputs does
    (an order line, a late Stripe refund, a charge that settles), and every changed
    input row carries the id (a unix time) of the dlt load that brought it. The
    lookback catches rows of a load that started before the last build but committed
    after it. Always true outside incremental runs, so --full-refresh rebuilds all.
-#}
{% macro loaded_since_last_build(load_id_column) -%}
    {%- if is_incremental() -%}
        cast({{ load_id_column }} as {{ dbt.type_float() }}) > (
            select coalesce(max(cast(source_load_id as {{ dbt.type_float() }})), 0)
            from {{ this }}
        ) - {{ var('fact_lookback_hours', 72) }} * 3600
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Drop fact rows whose key left the source (a hard delete upstream): a merge can't. -#}
{% macro delete_vanished(key, source_relation) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {{ key }} not in (select {{ key }} from {{ source_relation }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
