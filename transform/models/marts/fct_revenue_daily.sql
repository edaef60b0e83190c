-- A table, not incremental: one row per day and currency is small, and a late refund
-- changes a past day, which a full rebuild gets right without a lookback.
{{
    config(
        partition_by=day_partitioned('revenue_date', 'date'),
        cluster_by=clustered_by(bigquery=['currency'], snowflake=['revenue_date']),
    )
}}

with

orders as (

    select * from {{ ref('fct_orders') }}

),

payments as (

    select * from {{ ref('fct_payments') }}

),

orders_by_day as (

    select
        cast(ordered_at as date) as revenue_date,
        currency,
        count(*) as orders_placed,
        sum(order_total) as order_total

    from orders
    where status != 'cancelled'
    group by cast(ordered_at as date), currency

),

payments_by_day as (

    select
        cast(occurred_at as date) as revenue_date,
        currency,
        sum(case when payment_type = 'charge' then amount else 0 end) as amount_charged,
        sum(case when payment_type = 'refund' then amount else 0 end) as amount_refunded

    from payments
    where payment_status = 'succeeded'
    group by cast(occurred_at as date), currency

),

final as (

    select
        coalesce(orders_by_day.revenue_date, payments_by_day.revenue_date) as revenue_date,
        coalesce(orders_by_day.currency, payments_by_day.currency) as currency,
        cast(coalesce(orders_by_day.orders_placed, 0) as {{ dbt.type_bigint() }}) as orders_placed,
        cast(coalesce(orders_by_day.order_total, 0) as decimal(18, 2)) as order_total,
        cast(coalesce(payments_by_day.amount_charged, 0) as decimal(18, 2)) as amount_charged,
        cast(coalesce(payments_by_day.amount_refunded, 0) as decimal(18, 2)) as amount_refunded,
        cast(
            coalesce(payments_by_day.amount_charged, 0) - coalesce(payments_by_day.amount_refunded, 0)
            as decimal(18, 2)
        ) as net_revenue

    from orders_by_day
    full outer join payments_by_day
        on
            orders_by_day.revenue_date = payments_by_day.revenue_date
            and orders_by_day.currency = payments_by_day.currency

)

select * from final
