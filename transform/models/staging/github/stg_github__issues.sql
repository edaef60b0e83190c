with

source as (

    select * from {{ source('raw_github', 'issues') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as issue_id,
        cast(repository as {{ dbt.type_string() }}) as repository,
        cast(number as {{ dbt.type_bigint() }}) as issue_number,
        cast(title as {{ dbt.type_string() }}) as title,
        cast(lower(state) as {{ dbt.type_string() }}) as issue_state,
        cast(state_reason as {{ dbt.type_string() }}) as state_reason,
        cast(is_pull_request as {{ dbt.type_boolean() }}) as is_pull_request,
        cast(locked as {{ dbt.type_boolean() }}) as is_locked,
        cast(user_login as {{ dbt.type_string() }}) as author_login,
        cast(author_association as {{ dbt.type_string() }}) as author_association,
        cast(comments as {{ dbt.type_bigint() }}) as comment_count,
        cast(html_url as {{ dbt.type_string() }}) as html_url,
        created_at,
        updated_at,
        closed_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
