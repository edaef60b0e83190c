{#-
    Write-audit-publish, the publish half: copy the marts named in `tables` from the audit
    schema, where dbt builds them and the Soda contracts check them, to the schema
    consumers read. Marts not named keep their published version as it is.

        dbt run-operation publish_marts --args '{tables: [fct_orders, fct_payments]}'

    The flow names the marts this run built and whose contracts passed; by hand, run it
    after the same checks. The named marts change together or not at all (per warehouse,
    see below).
-#}
{% macro publish_marts(tables) %}
    {%- set marts = [] -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.fqn[1] == 'marts'
        and node.config.materialized in ('table', 'incremental') and node.alias in tables -%}
        {%- do marts.append(node) -%}
    {%- endfor -%}
    {%- set unknown = tables | reject('in', marts | map(attribute='alias') | list) | list -%}
    {%- if unknown -%}
        {{ exceptions.raise_compiler_error("publish_marts: not a mart model: " ~ unknown | join(", ")) }}
    {%- endif -%}
    {%- set audit_schema = generate_schema_name('marts_audit', none) | trim -%}
    {#- the schema consumers read: where the marts would go without the _audit suffix -#}
    {%- set published_schema = generate_schema_name('marts', none) | trim -%}
    {%- if marts -%}
        {{ adapter.dispatch('publish_marts', 'elt')(marts, audit_schema, published_schema) }}
    {%- endif -%}
    {{ log("published " ~ marts | length ~ " marts from " ~ audit_schema ~ " to " ~ published_schema, info=true) }}
{% endmacro %}

{#- DuckDB: one transaction replaces the named published tables; readers see old or new. -#}
{% macro default__publish_marts(marts, audit_schema, published_schema) %}
    {%- set statements = ["begin transaction", "create schema if not exists " ~ published_schema] -%}
    {%- for node in marts -%}
        {%- do statements.append(
            "create or replace table " ~ published_schema ~ "." ~ node.alias
            ~ " as select * from " ~ audit_schema ~ "." ~ node.alias
        ) -%}
    {%- endfor -%}
    {%- do statements.append("commit") -%}
    {%- do run_query(statements | join(";\n")) -%}
{% endmacro %}

{#-
    Snowflake: a zero-copy clone of the published schema takes zero-copy clones of the
    named marts, then one atomic statement swaps it in: the marts not named are the
    published ones, cloned, unchanged.
-#}
{% macro snowflake__publish_marts(marts, audit_schema, published_schema) %}
    {%- set next_schema = published_schema ~ "__next" -%}
    {%- do run_query("create schema if not exists " ~ published_schema) -%}
    {%- do run_query("create or replace schema " ~ next_schema ~ " clone " ~ published_schema) -%}
    {%- for node in marts -%}
        {%- do run_query(
            "create or replace table " ~ next_schema ~ "." ~ node.alias
            ~ " clone " ~ audit_schema ~ "." ~ node.alias
        ) -%}
    {%- endfor -%}
    {%- do run_query("alter schema " ~ published_schema ~ " swap with " ~ next_schema) -%}
    {%- do run_query("drop schema " ~ next_schema) -%}
{% endmacro %}

{#-
    BigQuery has no schema swap and no DDL transactions: each table is replaced by an
    atomic copy, so during the few seconds of a publish a reader may see some marts
    new and others old (documented in the README).
-#}
{% macro bigquery__publish_marts(marts, audit_schema, published_schema) %}
    {%- do run_query("create schema if not exists " ~ published_schema) -%}
    {%- for node in marts -%}
        {%- do run_query(
            "create or replace table " ~ published_schema ~ "." ~ node.alias
            ~ " copy " ~ audit_schema ~ "." ~ node.alias
        ) -%}
    {%- endfor -%}
{% endmacro %}

{#-
    Keep the audited build of the marts that failed a contract, for inspection:
    <schema>_marts_quarantine.<table>__<run_id>. The published marts are untouched.

        dbt run-operation quarantine_marts --args '{tables: [fct_orders], run_id: "20261128_0930"}'
-#}
{% macro quarantine_marts(tables, run_id) %}
    {%- set audit_schema = generate_schema_name('marts_audit', none) | trim -%}
    {%- set quarantine_schema = generate_schema_name('marts_quarantine', none) | trim -%}
    {%- do run_query("create schema if not exists " ~ quarantine_schema) -%}
    {%- for table in tables -%}
        {%- do run_query(
            "create table " ~ quarantine_schema ~ "." ~ table ~ "__" ~ run_id
            ~ " as select * from " ~ audit_schema ~ "." ~ table
        ) -%}
        {{ log("kept " ~ audit_schema ~ "." ~ table ~ " as " ~ quarantine_schema ~ "." ~ table ~ "__" ~ run_id, info=true) }}
    {%- endfor -%}
{% endmacro %}
