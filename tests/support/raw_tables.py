"""Raw tables as dlt writes them (with ``_dlt_load_id`` / ``_dlt_id``), small enough to read:
one order per payment outcome (paid, refunded, partially refunded, unpaid), for the tests
that build the dbt project or scaffold contracts from it."""

RAW_SQL = """
create schema raw_shop;
create schema raw_stripe;
create schema restricted;
create table restricted.pii_salt as select 'test-salt' as salt;

create table raw_shop.customers (
    id bigint, email varchar, first_name varchar, last_name varchar, street_address varchar, country varchar,
    created_at timestamptz, updated_at timestamptz, _dlt_load_id varchar, _dlt_id varchar
);
insert into raw_shop.customers values
    (1, 'ada@example.com', 'Ada', 'Lovelace', '12 St James Sq', 'gb', '2024-01-01 09:00:00+00',
      '2024-01-01 09:00:00+00', '1700000000.1', 'c1'),
    (2, 'bob@example.com', 'Bob', 'Builder', '1 Yard Lane', 'DE', '2024-01-02 09:00:00+00',
      '2024-01-02 09:00:00+00', '1700000000.1', 'c2'),
    (3, 'cy@example.com', 'Cy', 'Young', '3 Rue Verte', 'FR', '2024-01-03 09:00:00+00',
      '2024-01-03 09:00:00+00',
      '1700000000.1', 'c3');

create table raw_shop.products (
    id bigint, sku varchar, name varchar, category varchar, price decimal(12, 2),
    created_at timestamptz, updated_at timestamptz, _dlt_load_id varchar, _dlt_id varchar
);
insert into raw_shop.products values
    (1, 'SKU-1', 'Mug', 'kitchen', 10.00, '2024-01-01 00:00:00+00', '2024-01-01 00:00:00+00',
      '1700000000.1', 'p1'),
    (2, 'SKU-2', 'Teapot', 'kitchen', 25.50, '2024-01-01 00:00:00+00', '2024-01-01 00:00:00+00',
      '1700000000.1', 'p2');

create table raw_shop.orders (
    id bigint, customer_id bigint, status varchar, currency varchar,
    ordered_at timestamptz, updated_at timestamptz, _dlt_load_id varchar, _dlt_id varchar
);
insert into raw_shop.orders values
    (101, 1, 'delivered', 'usd', '2024-02-01 10:00:00+00', '2024-02-03 10:00:00+00',
      '1700000000.1', 'o1'),
    (102, 1, 'delivered', 'usd', '2024-03-01 10:00:00+00', '2024-03-05 10:00:00+00',
      '1700000000.1', 'o2'),
    (103, 2, 'shipped', 'usd', '2024-02-10 10:00:00+00', '2024-02-11 10:00:00+00', '1700000000.1', 'o3'),
    (104, 2, 'placed', 'usd', '2024-02-20 10:00:00+00', '2024-02-20 10:00:00+00', '1700000000.1', 'o4');

create table raw_shop.order_items (
    id bigint, order_id bigint, product_id bigint, quantity bigint, unit_price decimal(12, 2),
    updated_at timestamptz, _dlt_load_id varchar, _dlt_id varchar
);
insert into raw_shop.order_items values
    (1001, 101, 1, 2, 10.00, '2024-02-01 10:00:00+00', '1700000000.1', 'i1'),
    (1002, 101, 2, 1, 25.50, '2024-02-01 10:00:00+00', '1700000000.1', 'i2'),
    (1003, 102, 2, 1, 25.50, '2024-03-01 10:00:00+00', '1700000000.1', 'i3'),
    (1004, 103, 1, 3, 10.00, '2024-02-10 10:00:00+00', '1700000000.1', 'i4'),
    (1005, 104, 1, 1, 10.00, '2024-02-20 10:00:00+00', '1700000000.1', 'i5');

create table raw_stripe.customers (
    id varchar, object varchar, created bigint, email varchar, name varchar, livemode boolean,
    metadata json, _dlt_load_id varchar, _dlt_id varchar
);
insert into raw_stripe.customers values
    ('cus_A', 'customer', 1704099600, 'ada@example.com', 'Ada Lovelace', false,
      '{"shop_customer_id": "1"}', '1700000000.2', 's1'),
    ('cus_B', 'customer', 1704186000, 'bob@example.com', 'Bob Builder', false,
      '{"shop_customer_id": "2"}', '1700000000.2', 's2'),
    ('cus_Z', 'customer', 1704272400, 'zed@example.com', 'Zed', false, '{}', '1700000000.2', 's3');

create table raw_stripe.charges (
    id varchar, object varchar, amount bigint, amount_refunded bigint, currency varchar,
    customer varchar, created bigint, status varchar, paid boolean, refunded boolean,
    livemode boolean, metadata json, description varchar, _dlt_load_id varchar, _dlt_id varchar
);
insert into raw_stripe.charges values
    ('ch_101', 'charge', 4550, 0, 'usd', 'cus_A', 1706781600, 'succeeded', true, false, false,
      '{"order_id": "101"}', 'order 101', '1700000000.2', 'h1'),
    ('ch_102', 'charge', 2550, 2550, 'usd', 'cus_A', 1709287200, 'succeeded', true, true, false,
      '{"order_id": "102"}', 'order 102', '1700000000.2', 'h2'),
    ('ch_103a', 'charge', 3000, 0, 'usd', 'cus_B', 1707559200, 'failed', false, false, false,
      '{"order_id": "103"}', 'order 103', '1700000000.2', 'h3'),
    ('ch_103b', 'charge', 3000, 1000, 'usd', 'cus_B', 1707559500, 'succeeded', true, false, false,
      '{"order_id": "103"}', 'order 103', '1700000000.2', 'h4'),
    ('ch_gift', 'charge', 999, 0, 'usd', 'cus_Z', 1707559900, 'succeeded', true, false, false,
      '{}', 'gift card', '1700000000.2', 'h5');

create table raw_stripe.refunds (
    id varchar, object varchar, amount bigint, charge varchar, currency varchar, created bigint,
    status varchar, reason varchar, _dlt_load_id varchar, _dlt_id varchar
);
insert into raw_stripe.refunds values
    ('re_1', 'refund', 2550, 'ch_102', 'usd', 1709560800, 'succeeded', 'requested_by_customer',
      '1700000000.2', 'r1'),
    ('re_2', 'refund', 1000, 'ch_103b', 'usd', 1707800000, 'succeeded', 'duplicate',
      '1700000000.2', 'r2'),
    ('re_3', 'refund', 500, 'ch_103b', 'usd', 1707800100, 'failed', null, '1700000000.2', 'r3');

-- Arrow loads: _dlt_load_id only
create table raw_stripe.events (
    id varchar, object varchar, type varchar, created bigint, api_version varchar, livemode boolean,
    object_id varchar, object_type varchar, data json, _dlt_load_id varchar
);
insert into raw_stripe.events values
    ('evt_1', 'event', 'charge.refunded', 1709560800, '2024-06-20', false, 'ch_102', 'charge',
      '{"object": {"id": "ch_102"}}', '1700000000.2');

create schema raw_example_tickets;
create table raw_example_tickets.tickets (
    id bigint, subject varchar, status varchar, priority varchar, requester json, tags json,
    comments_count bigint, created_at timestamptz, updated_at timestamptz, description varchar,
    _dlt_load_id varchar
);
insert into raw_example_tickets.tickets values
    (7, 'Refund?', 'Open', 'HIGH', '{"id": 42, "email": "ada@example.com"}', '["billing"]', 1,
      '2024-03-01 10:00:00+00', '2024-03-02 10:00:00+00', 'Where is my refund?', '1700000000.3');

create table raw_stripe.invoices (
    id varchar, object varchar, customer varchar, number varchar, status varchar, currency varchar,
    amount_due bigint, amount_paid bigint, amount_remaining bigint, total bigint, created bigint,
    livemode boolean, metadata json, lines json, _dlt_load_id varchar
);
insert into raw_stripe.invoices values
    ('in_1', 'invoice', 'cus_A', 'INV-0001', 'paid', 'usd', 4550, 4550, 0, 4550, 1706781000, false,
      '{}', '{"object": "list", "data": []}', '1700000000.2'),
    ('in_2', 'invoice', 'cus_B', null, 'draft', 'usd', 3000, 0, 3000, 3000, 1707559000, false,
      '{}', '{"object": "list", "data": []}', '1700000000.2');
"""
