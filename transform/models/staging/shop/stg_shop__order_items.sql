with

source as (

    select * from {{ source('raw_shop', 'order_items') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as order_item_id,
        cast(order_id as {{ dbt.type_bigint() }}) as order_id,
        cast(product_id as {{ dbt.type_bigint() }}) as product_id,
        cast(quantity as {{ dbt.type_bigint() }}) as quantity,
        cast(unit_price as decimal(18, 2)) as unit_price,
        updated_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
