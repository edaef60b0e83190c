with

source as (

    select * from {{ source('raw_shop', 'products') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_bigint() }}) as product_id,
        cast(sku as {{ dbt.type_string() }}) as sku,
        cast(name as {{ dbt.type_string() }}) as product_name,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(price as decimal(18, 2)) as price,
        created_at,
        updated_at,
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
