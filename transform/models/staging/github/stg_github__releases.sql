with

source as (

    select * from {{ source('raw_github', 'releases') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as release_id,
        cast(repository as {{ dbt.type_string() }}) as repository,
        cast(tag_name as {{ dbt.type_string() }}) as tag_name,
        cast(name as {{ dbt.type_string() }}) as release_name,
        cast(target_commitish as {{ dbt.type_string() }}) as target_commitish,
        cast(draft as {{ dbt.type_boolean() }}) as is_draft,
        cast(prerelease as {{ dbt.type_boolean() }}) as is_prerelease,
        cast(author_login as {{ dbt.type_string() }}) as author_login,
        cast(html_url as {{ dbt.type_string() }}) as html_url,
        created_at,
        published_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
