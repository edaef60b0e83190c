"""The demo data must be identical on every run, and the shop and Stripe halves must agree."""

from datetime import UTC, datetime, timedelta

from standins.dataset import generate


def test_same_arguments_same_data() -> None:
    assert generate(300) == generate(300)


def test_every_paid_order_has_one_succeeded_charge_for_its_total() -> None:
    data = generate(500)
    totals: dict[int, int] = {}
    for _, order_id, _, quantity, unit_price, _ in data.order_items:
        totals[order_id] = totals.get(order_id, 0) + int(unit_price * 100) * quantity
    succeeded = [c for c in data.stripe_charges if c["status"] == "succeeded"]
    by_order = {int(c["metadata"]["order_id"]): c["amount"] for c in succeeded}
    assert len(by_order) == len(succeeded)
    unpaid = {order[0] for order in data.orders if order[2] == "placed"}
    assert set(by_order) == set(totals) - unpaid
    assert all(by_order[order_id] == totals[order_id] for order_id in by_order)


def test_refunds_point_at_charges_and_never_exceed_them() -> None:
    data = generate(2000)
    charges = {c["id"]: c for c in data.stripe_charges}
    assert data.stripe_refunds
    for refund in data.stripe_refunds:
        assert refund["amount"] <= charges[refund["charge"]]["amount"]


def test_a_history_ending_now_has_nothing_in_the_future_and_orders_follow_sign_ups() -> None:
    ends_at = datetime(2026, 12, 7, 19, tzinfo=UTC)
    data = generate(3000, ends_at=ends_at)
    signed_up = {customer[0]: customer[6] for customer in data.customers}

    assert all(signed_up[customer_id] < ordered_at for _, customer_id, _, _, ordered_at, _ in data.orders)
    assert max(order[5] for order in data.orders) <= ends_at
    assert ends_at - max(order[4] for order in data.orders) < timedelta(hours=13)
    stripe_times = [obj["created"] for obj in (*data.stripe_charges, *data.stripe_refunds)]
    assert max(stripe_times) <= ends_at.timestamp()
    # the newest orders are still on their way: none delivered within a day and a half
    young = [order for order in data.orders if ends_at - order[4] < timedelta(hours=36)]
    assert young and all(order[2] != "delivered" for order in young)
    assert generate(3000) != data  # the tests' fixed history is another one


def test_a_small_recent_history_still_has_every_kind_of_row() -> None:
    """``elt demo --orders 500``: its orders spread over two weeks, so some were delivered,
    cancelled and refunded, and the refunds table is not missing from the first load."""
    data = generate(500, ends_at=datetime(2026, 12, 7, 19, tzinfo=UTC))
    statuses = {order[2] for order in data.orders}
    assert {"delivered", "cancelled"} <= statuses and data.stripe_refunds
