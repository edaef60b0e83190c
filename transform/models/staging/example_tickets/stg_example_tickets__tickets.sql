with

source as (

    select * from {{ source('raw_example_tickets', 'tickets') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as ticket_id,
        cast(subject as {{ dbt.type_string() }}) as subject,
        cast(lower(status) as {{ dbt.type_string() }}) as ticket_status,
        cast(lower(priority) as {{ dbt.type_string() }}) as priority,
        cast({{ json_field('requester', 'id') }} as {{ dbt.type_bigint() }}) as requester_id,
        cast({{ json_field('requester', 'email') }} as {{ dbt.type_string() }}) as requester_email,
        tags,
        cast(comments_count as {{ dbt.type_bigint() }}) as comment_count,
        created_at,
        updated_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
