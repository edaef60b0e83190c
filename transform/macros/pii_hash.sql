{#-
    Salted SHA-256 of a personal value (trimmed, lower-cased), or null.
    The salt is a secret kept in the warehouse (restricted.pii_salt, written by the flow
    from ELT_PII_SALT), never in the SQL text: compiled models and dbt's logs are
    artifacts, and a salt in them would let anyone rebuild the hashes.
-#}
{% macro pii_hash(expr) -%}
    case
        when {{ expr }} is null then null
        else {{ adapter.dispatch('sha256_hex', 'elt')(
            dbt.concat([
                "(select salt from " ~ source('restricted', 'pii_salt') ~ ")",
                "lower(trim(cast(" ~ expr ~ " as " ~ dbt.type_string() ~ ")))",
            ])
        ) }}
    end
{%- endmacro %}

{% macro default__sha256_hex(expr) -%}
    sha256({{ expr }})
{%- endmacro %}

{% macro snowflake__sha256_hex(expr) -%}
    sha2({{ expr }}, 256)
{%- endmacro %}

{% macro bigquery__sha256_hex(expr) -%}
    to_hex(sha256({{ expr }}))
{%- endmacro %}
