with

customer_versions as (

    select * from {{ ref('snap_shop__customers') }}

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
        shop_customer_id,
        stripe_customer_id,
        row_number() over (
            partition by shop_customer_id
            order by created_at, stripe_customer_id
        ) as link_rank

    from stripe_customers
    where shop_customer_id is not null

),

stripe_links as (

    select
        shop_customer_id,
        stripe_customer_id

    from stripe_links_ranked
    where link_rank = 1

),

orders_by_customer as (

    select
        customer_id,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        count(*) as order_count,
        sum(amount_paid - amount_refunded) as lifetime_value

    from orders
    group by customer_id

),

final as (

    select
        customer_versions.dbt_scd_id as customer_key,
        customer_versions.customer_id,
        {{ pii_hash('customer_versions.email') }} as email_hash,
        {{ pii_hash("customer_versions.first_name || ' ' || customer_versions.last_name") }} as name_hash,
        {{ pii_hash('customer_versions.street_address') }} as street_address_hash,
        customer_versions.country,
        stripe_links.stripe_customer_id,
        customer_versions.created_at,
        customer_versions.dbt_valid_from as valid_from,
        customer_versions.dbt_valid_to as valid_to,
        customer_versions.dbt_valid_to is null as is_current,
        orders_by_customer.first_order_at,
        orders_by_customer.last_order_at,
        cast(coalesce(orders_by_customer.order_count, 0) as {{ dbt.type_bigint() }}) as order_count,
        cast(coalesce(orders_by_customer.lifetime_value, 0) as decimal(18, 2)) as lifetime_value

    from customer_versions
    left join stripe_links
        on customer_versions.customer_id = stripe_links.shop_customer_id
    left join orders_by_customer
        on customer_versions.customer_id = orders_by_customer.customer_id

)

select * from final
