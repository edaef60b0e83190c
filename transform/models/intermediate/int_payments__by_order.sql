with

charges as (

    select * from {{ ref('stg_stripe__charges') }}

),

refunds as (

    select * from {{ ref('stg_stripe__refunds') }}

),

-- refunds are aggregated per charge first so joining them cannot fan out charge amounts;
-- the load id covers every refund, so a refund that fails later still marks its order changed
refunds_by_charge as (

    select
        charge_id,
        sum(case when refund_status = 'succeeded' then amount else 0 end) as amount_refunded,
        max(dlt_load_id) as last_load_id

    from refunds
    group by charge_id

),

succeeded_charges as (

    select
        charges.order_id,
        charges.charge_id,
        charges.amount,
        coalesce(refunds_by_charge.amount_refunded, 0) as amount_refunded,
        greatest(
            charges.dlt_load_id,
            coalesce(refunds_by_charge.last_load_id, charges.dlt_load_id)
        ) as last_load_id

    from charges
    left join refunds_by_charge
        on charges.charge_id = refunds_by_charge.charge_id
    where charges.charge_status = 'succeeded'
        and charges.order_id is not null

),

charge_attempts as (

    select
        order_id,
        count(*) as charge_count,
        max(dlt_load_id) as last_load_id

    from charges
    where order_id is not null
    group by order_id

),

paid_by_order as (

    select
        order_id,
        sum(amount) as amount_paid,
        sum(amount_refunded) as amount_refunded,
        count(*) as succeeded_charge_count,
        max(last_load_id) as last_load_id

    from succeeded_charges
    group by order_id

),

final as (

    select
        charge_attempts.order_id,
        cast(coalesce(paid_by_order.amount_paid, 0) as decimal(18, 2)) as amount_paid,
        cast(coalesce(paid_by_order.amount_refunded, 0) as decimal(18, 2)) as amount_refunded,
        charge_attempts.charge_count,
        coalesce(paid_by_order.succeeded_charge_count, 0) as succeeded_charge_count,
        greatest(
            charge_attempts.last_load_id,
            coalesce(paid_by_order.last_load_id, charge_attempts.last_load_id)
        ) as last_load_id

    from charge_attempts
    left join paid_by_order
        on charge_attempts.order_id = paid_by_order.order_id

)

select * from final
