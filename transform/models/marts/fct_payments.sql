{{
    config(
        materialized='incremental',
        unique_key='payment_id',
        on_schema_change='append_new_columns',
        partition_by=day_partitioned('occurred_at'),
        cluster_by=clustered_by(bigquery=['order_id'], snowflake=['to_date(occurred_at)']),
    )
}}

with

charges as (

    select * from {{ ref('stg_stripe__charges') }}

),

refunds as (

    select * from {{ ref('stg_stripe__refunds') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

charge_payments as (

    select
        charge_id as payment_id,
        'charge' as payment_type,
        charge_id,
        order_id,
        stripe_customer_id,
        currency,
        charge_status as payment_status,
        amount,
        amount as signed_amount,
        created_at as occurred_at,
        dlt_load_id

    from charges
    where {{ loaded_since_last_build('dlt_load_id') }}

),

refund_payments as (

    select
        refunds.refund_id as payment_id,
        'refund' as payment_type,
        refunds.charge_id,
        charges.order_id,
        charges.stripe_customer_id,
        refunds.currency,
        refunds.refund_status as payment_status,
        refunds.amount,
        -refunds.amount as signed_amount,
        refunds.created_at as occurred_at,
        refunds.dlt_load_id

    from refunds
    left join charges
        on refunds.charge_id = charges.charge_id
    where {{ loaded_since_last_build('refunds.dlt_load_id') }}

),

payments as (

    select * from charge_payments
    union all
    select * from refund_payments

),

final as (

    select
        payments.payment_id,
        payments.payment_type,
        payments.charge_id,
        payments.order_id,
        orders.customer_id,
        payments.stripe_customer_id,
        payments.currency,
        payments.payment_status,
        payments.amount,
        payments.signed_amount,
        payments.occurred_at,
        payments.dlt_load_id as source_load_id,
        payments.order_id is not null and orders.order_id is not null as is_matched_to_order

    from payments
    left join orders
        on payments.order_id = orders.order_id

)

select * from final
