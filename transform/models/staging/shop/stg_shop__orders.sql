with

source as (

    select * from {{ source('raw_shop', 'orders') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as order_id,
        cast(customer_id as {{ dbt.type_bigint() }}) as customer_id,
        cast(lower(status) as {{ dbt.type_string() }}) as status,
        cast(upper(currency) as {{ dbt.type_string() }}) as currency,
        ordered_at,
        updated_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
