with

source as (

    select * from {{ source('raw_stripe', 'refunds') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as refund_id,
        cast(charge as {{ dbt.type_string() }}) as charge_id,
        {{ cents_to_amount('amount') }} as amount,
        cast(upper(currency) as {{ dbt.type_string() }}) as currency,
        cast(lower(status) as {{ dbt.type_string() }}) as refund_status,
        cast(reason as {{ dbt.type_string() }}) as reason,
        {{ unix_to_timestamp('created') }} as created_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
