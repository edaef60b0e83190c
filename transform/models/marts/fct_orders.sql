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
        order_id as order_id,
        sum(quantity) as item_count,
        sum(quantity * unit_price) as order_total

    from order_items
    group by order_id

),

joined as (

    select
        orders.order_id as order_id,
        orders.customer_id as customer_id,
        orders.status as status,
        orders.currency as currency,
        orders.ordered_at as ordered_at,
        cast(coalesce(items_by_order.item_count, 0) as {{ dbt.type_bigint() }}) as item_count,
        cast(coalesce(items_by_order.order_total, 0) as decimal(18, 2)) as order_total,
        cast(coalesce(payments.amount_paid, 0) as decimal(18, 2)) as amount_paid,
        cast(coalesce(payments.amount_refunded, 0) as decimal(18, 2)) as amount_refunded

    from orders
    left join items_by_order
        on orders.order_id = items_by_order.order_id
    left join payments
        on orders.order_id = payments.order_id

),

final as (

    select
        order_id as order_id,
        customer_id as customer_id,
        status as status,
        currency as currency,
        ordered_at as ordered_at,
        item_count as item_count,
        order_total as order_total,
        amount_paid as amount_paid,
        amount_refunded as amount_refunded,
        case
            when amount_paid > 0 and amount_refunded >= amount_paid then 'refunded'
            when amount_refunded > 0 and amount_refunded < amount_paid then 'partially_refunded'
            when amount_paid > 0 and amount_paid >= order_total then 'paid'
            else 'unpaid'
        end as payment_status

    from joined

)

select * from final
