"""The demo data must be identical on every run, and the shop and Stripe halves must agree."""

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
