with

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

stripe_customers as (

    select * from {{ ref('stg_stripe__customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

-- a shop customer can end up with several Stripe customers; keep the oldest link
stripe_links_ranked as (

    select
        shop_customer_id as shop_customer_id,
        stripe_customer_id as stripe_customer_id,
        row_number() over (
            partition by shop_customer_id
            order by created_at, stripe_customer_id
        ) as link_rank

    from stripe_customers
    where shop_customer_id is not null

),

stripe_links as (

    select
        shop_customer_id as shop_customer_id,
        stripe_customer_id as stripe_customer_id

    from stripe_links_ranked
    where link_rank = 1

),

orders_by_customer as (

    select
        customer_id as customer_id,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        count(*) as order_count,
        sum(amount_paid - amount_refunded) as lifetime_value

    from orders
    group by customer_id

),

final as (

    select
        customers.customer_id as customer_id,
        customers.email as email,
        customers.first_name as first_name,
        customers.last_name as last_name,
        customers.country as country,
        stripe_links.stripe_customer_id as stripe_customer_id,
        customers.created_at as created_at,
        orders_by_customer.first_order_at as first_order_at,
        orders_by_customer.last_order_at as last_order_at,
        cast(coalesce(orders_by_customer.order_count, 0) as {{ dbt.type_bigint() }}) as order_count,
        cast(coalesce(orders_by_customer.lifetime_value, 0) as decimal(18, 2)) as lifetime_value

    from customers
    left join stripe_links
        on customers.customer_id = stripe_links.shop_customer_id
    left join orders_by_customer
        on customers.customer_id = orders_by_customer.customer_id

)

select * from final
