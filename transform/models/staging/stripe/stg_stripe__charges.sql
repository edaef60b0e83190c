with

source as (

    select * from {{ source('raw_stripe', 'charges') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as charge_id,
        cast(customer as {{ dbt.type_string() }}) as stripe_customer_id,
        cast({{ json_field('metadata', 'order_id') }} as {{ dbt.type_bigint() }}) as order_id,
        {{ cents_to_amount('amount') }} as amount,
        {{ cents_to_amount('amount_refunded') }} as amount_refunded,
        cast(upper(currency) as {{ dbt.type_string() }}) as currency,
        cast(lower(status) as {{ dbt.type_string() }}) as charge_status,
        cast(paid as {{ dbt.type_boolean() }}) as is_paid,
        cast(refunded as {{ dbt.type_boolean() }}) as is_refunded,
        cast(livemode as {{ dbt.type_boolean() }}) as is_livemode,
        cast(description as {{ dbt.type_string() }}) as description,
        {{ unix_to_timestamp('created') }} as created_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
