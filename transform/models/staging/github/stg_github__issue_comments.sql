with

source as (

    select * from {{ source('raw_github', 'issue_comments') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as comment_id,
        cast(repository as {{ dbt.type_string() }}) as repository,
        cast(issue_number as {{ dbt.type_bigint() }}) as issue_number,
        cast(user_login as {{ dbt.type_string() }}) as author_login,
        cast(author_association as {{ dbt.type_string() }}) as author_association,
        cast(body as {{ dbt.type_string() }}) as body,
        cast(html_url as {{ dbt.type_string() }}) as html_url,
        created_at,
        updated_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
