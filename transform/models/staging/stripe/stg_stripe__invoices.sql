with

source as (

    select * from {{ source('raw_stripe', 'invoices') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as invoice_id,
        cast(customer as {{ dbt.type_string() }}) as stripe_customer_id,
        cast(number as {{ dbt.type_string() }}) as invoice_number,
        cast(lower(status) as {{ dbt.type_string() }}) as invoice_status,
        cast(upper(currency) as {{ dbt.type_string() }}) as currency,
        {{ cents_to_amount('amount_due') }} as amount_due,
        {{ cents_to_amount('amount_paid') }} as amount_paid,
        {{ cents_to_amount('amount_remaining') }} as amount_remaining,
        {{ cents_to_amount('total') }} as total,
        cast(livemode as {{ dbt.type_boolean() }}) as is_livemode,
        {{ unix_to_timestamp('created') }} as created_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
