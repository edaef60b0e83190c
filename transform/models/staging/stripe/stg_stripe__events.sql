with

source as (

    select * from {{ source('raw_stripe', 'events') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as event_id,
        cast(type as {{ dbt.type_string() }}) as event_type,
        cast(object_id as {{ dbt.type_string() }}) as object_id,
        cast(object_type as {{ dbt.type_string() }}) as object_type,
        cast(api_version as {{ dbt.type_string() }}) as api_version,
        cast(livemode as {{ dbt.type_boolean() }}) as is_livemode,
        {{ unix_to_timestamp('created') }} as created_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
