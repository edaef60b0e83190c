{{
    config(
        materialized='incremental',
        unique_key='order_item_id',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_vanished('order_item_id', ref('stg_shop__order_items')) }}",
        partition_by=day_partitioned('ordered_at'),
        cluster_by=clustered_by(bigquery=['order_id', 'product_id'], snowflake=['to_date(ordered_at)']),
    )
}}

with

order_items as (

    select * from {{ ref('stg_shop__order_items') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

-- a line is rebuilt when it or its order (customer, currency, date) was loaded since the last build
changed_items as (

    select order_item_id from order_items
    where {{ loaded_since_last_build('dlt_load_id') }}

    {{ union_distinct() }}

    select order_items.order_item_id
    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    where {{ loaded_since_last_build('orders.dlt_load_id') }}

),

final as (

    select
        order_items.order_item_id,
        order_items.order_id,
        orders.customer_id,
        order_items.product_id,
        orders.currency,
        orders.ordered_at,
        order_items.quantity,
        order_items.unit_price,
        cast(order_items.quantity * order_items.unit_price as decimal(18, 2)) as line_total,
        greatest(
            order_items.dlt_load_id, coalesce(orders.dlt_load_id, order_items.dlt_load_id)
        ) as source_load_id

    from order_items
    inner join changed_items
        on order_items.order_item_id = changed_items.order_item_id
    left join orders
        on order_items.order_id = orders.order_id

)

select * from final
