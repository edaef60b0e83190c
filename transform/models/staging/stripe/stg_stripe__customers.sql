with

source as (

    select * from {{ source('raw_stripe', 'customers') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as stripe_customer_id,
        cast({{ json_field('metadata', 'shop_customer_id') }} as {{ dbt.type_bigint() }}) as shop_customer_id,
        cast(email as {{ dbt.type_string() }}) as email,
        cast(name as {{ dbt.type_string() }}) as customer_name,
        cast(livemode as {{ dbt.type_boolean() }}) as is_livemode,
        {{ unix_to_timestamp('created') }} as created_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
