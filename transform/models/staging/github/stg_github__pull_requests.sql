with

source as (

    select * from {{ source('raw_github', 'pull_requests') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as pull_request_id,
        cast(repository as {{ dbt.type_string() }}) as repository,
        cast(number as {{ dbt.type_bigint() }}) as pull_request_number,
        cast(title as {{ dbt.type_string() }}) as title,
        cast(lower(state) as {{ dbt.type_string() }}) as pull_request_state,
        cast(draft as {{ dbt.type_boolean() }}) as is_draft,
        cast(locked as {{ dbt.type_boolean() }}) as is_locked,
        merged_at is not null as is_merged,
        cast(user_login as {{ dbt.type_string() }}) as author_login,
        cast(author_association as {{ dbt.type_string() }}) as author_association,
        cast(head_ref as {{ dbt.type_string() }}) as head_ref,
        cast(head_sha as {{ dbt.type_string() }}) as head_sha,
        cast(base_ref as {{ dbt.type_string() }}) as base_ref,
        cast(merge_commit_sha as {{ dbt.type_string() }}) as merge_commit_sha,
        cast(html_url as {{ dbt.type_string() }}) as html_url,
        created_at,
        updated_at,
        closed_at,
        merged_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
