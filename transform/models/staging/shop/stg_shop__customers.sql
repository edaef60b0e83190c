with

source as (

    select * from {{ source('raw_shop', 'customers') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as customer_id,
        cast(email as {{ dbt.type_string() }}) as email,
        cast(first_name as {{ dbt.type_string() }}) as first_name,
        cast(last_name as {{ dbt.type_string() }}) as last_name,
        cast(street_address as {{ dbt.type_string() }}) as street_address,
        cast(upper(country) as {{ dbt.type_string() }}) as country,
        created_at,
        updated_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
