{{
    config(
        materialized='incremental',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_vanished('order_id', ref('stg_shop__orders')) }}",
        partition_by=day_partitioned('ordered_at'),
        cluster_by=clustered_by(bigquery=['customer_id'], snowflake=['to_date(ordered_at)']),
    )
}}

with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

order_items as (

    select * from {{ ref('stg_shop__order_items') }}

),

payments as (

    select * from {{ ref('int_payments__by_order') }}

),

items_by_order as (

    select
        order_id,
        sum(quantity) as item_count,
        sum(quantity * unit_price) as order_total,
        max(dlt_load_id) as last_load_id

    from order_items
    group by order_id

),

-- an order is rebuilt when its row, any of its lines or its payments were loaded since
-- the last build (see the loaded_since_last_build macro for the lookback)
changed_orders as (

    select order_id from orders
    where {{ loaded_since_last_build('dlt_load_id') }}

    {{ union_distinct() }}

    select order_id from items_by_order
    where {{ loaded_since_last_build('last_load_id') }}

    {{ union_distinct() }}

    select order_id from payments
    where {{ loaded_since_last_build('last_load_id') }}

),

joined as (

    select
        orders.order_id,
        orders.customer_id,
        orders.status,
        orders.currency,
        orders.ordered_at,
        cast(coalesce(items_by_order.item_count, 0) as {{ dbt.type_bigint() }}) as item_count,
        cast(coalesce(items_by_order.order_total, 0) as decimal(18, 2)) as order_total,
        cast(coalesce(payments.amount_paid, 0) as decimal(18, 2)) as amount_paid,
        cast(coalesce(payments.amount_refunded, 0) as decimal(18, 2)) as amount_refunded,
        greatest(
            orders.dlt_load_id,
            coalesce(items_by_order.last_load_id, orders.dlt_load_id),
            coalesce(payments.last_load_id, orders.dlt_load_id)
        ) as source_load_id

    from orders
    inner join changed_orders
        on orders.order_id = changed_orders.order_id
    left join items_by_order
        on orders.order_id = items_by_order.order_id
    left join payments
        on orders.order_id = payments.order_id

),

final as (

    select
        order_id,
        customer_id,
        status,
        currency,
        ordered_at,
        item_count,
        order_total,
        amount_paid,
        amount_refunded,
        source_load_id,
        case
            when amount_paid > 0 and amount_refunded >= amount_paid then 'refunded'
            when amount_refunded > 0 and amount_refunded < amount_paid then 'partially_refunded'
            when amount_paid > 0 and amount_paid >= order_total then 'paid'
            else 'unpaid'
        end as payment_status

    from joined

)

select * from final
