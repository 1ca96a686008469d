"""The record handler: decode → load → engine → emit → store → count, against fakes."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest
from processor_fakes import TOPICS, Rig, new_rig

from nudge.processor.timers import unpack

CART = {"product_id": "p-9", "name": "Tea set", "price": 4800, "quantity": 1}
ORDER = {"order_id": "o-1", "total": 4800, "currency": "JPY", "items": []}


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_order_completed_emits_a_confirmation_keyed_by_user(rig: Rig) -> None:
    """The walking skeleton: an order becomes an order_confirmation command on send-commands."""
    await rig.event(type="order.completed", user_id="u-1", properties=ORDER)
    [out] = rig.sink.on(TOPICS.send_commands)
    assert out.key == b"u-1"
    assert orjson.loads(out.value)["journey"] == "order_confirmation"
    assert b"u-1" in rig.store.data


async def test_commands_are_acknowledged_before_the_state_is_stored(rig: Rig) -> None:
    """Send-then-store: a batch is published before the state write of its record happens."""
    await rig.event(type="order.completed", user_id="u-1", properties=ORDER)
    assert rig.sink.writes_at_publish == [0]
    assert rig.store.writes == 1


async def test_cart_reminder_fires_when_due_and_not_before(rig: Rig) -> None:
    """A tick before the due time fires nothing; one after it fires the reminder once."""
    await rig.event(type="cart.item_added", user_id="u-2", properties=CART)
    await rig.tick()
    rig.clock.advance(seconds=59)
    await rig.tick()
    assert rig.commands() == []
    rig.clock.advance(seconds=2)
    await rig.tick()
    await rig.tick()
    assert [c["step"] for c in rig.commands()] == ["reminder_1"]
    assert unpack(rig.store.data[b"u-2"]).wake_at is None


async def test_an_order_in_between_cancels_the_reminder(rig: Rig) -> None:
    """The order clears the wake-up in the index and the table: nothing fires later."""
    await rig.event(type="cart.item_added", user_id="u-3", properties=CART)
    await rig.tick()
    assert rig.index.pending(0) == 1
    await rig.event(type="order.completed", user_id="u-3", properties=ORDER)
    assert rig.index.pending(0) == 0
    rig.clock.advance(minutes=5)
    await rig.tick()
    assert [c["journey"] for c in rig.commands()] == ["order_confirmation"]


async def test_a_restarted_worker_rebuilds_the_index_and_fires_overdue_timers(rig: Rig) -> None:
    """Timers live in the table: a fresh handler (new worker) fires what fell due meanwhile."""
    await rig.event(type="cart.item_added", user_id="u-4", properties=CART, partition=1)
    restarted = rig.with_handler()
    rig.clock.advance(minutes=10)
    await restarted.tick(partition=0)
    assert restarted.commands() == []
    assert restarted.index.pending(1) == 1
    await restarted.tick(partition=1)
    assert [c["user_id"] for c in restarted.commands()] == ["u-4"]


async def test_ticks_only_fire_users_of_their_partition(rig: Rig) -> None:
    """A tick on partition 0 never touches a user stored by partition 1 (table writes are per
    partition in Faust)."""
    await rig.event(type="cart.item_added", user_id="u-5", properties=CART, partition=1)
    await rig.tick(partition=0)
    await rig.tick(partition=1)
    rig.clock.advance(minutes=2)
    await rig.tick(partition=0)
    assert rig.commands() == []
    await rig.tick(partition=1)
    assert len(rig.commands()) == 1


async def test_malformed_event_is_dead_lettered_and_the_next_one_processed(rig: Rig) -> None:
    """Bad JSON goes to the DLT with its reason; the stream carries on."""
    before = sample("nudge_dead_lettered_total", {"source": "events", "reason": "malformed_json"})
    bad = await rig.feed(TOPICS.events, b"{not json", key=b"u-6")
    await rig.event(type="order.completed", user_id="u-6", properties=ORDER)
    [letter] = rig.sink.dead_letters
    assert (letter.record, letter.reason) == (bad, "malformed_json")
    assert len(rig.commands()) == 1
    after = sample("nudge_dead_lettered_total", {"source": "events", "reason": "malformed_json"})
    assert after == before + 1


async def test_a_record_keyed_by_another_user_is_dead_lettered(rig: Rig) -> None:
    """State is placed by key, so a key that is not the user_id is rejected, not mis-stored."""
    value = orjson.dumps(
        {
            "event_id": "e-1",
            "type": "user.logged_in",
            "user_id": "u-7",
            "occurred_at": "2026-11-22T10:00:00+09:00",
        }
    )
    await rig.feed(TOPICS.events, value, key=b"someone-else")
    assert [d.reason for d in rig.sink.dead_letters] == ["key_mismatch"]
    assert rig.store.data == {}


async def test_unknown_event_types_are_counted_and_ignored(rig: Rig) -> None:
    """Apps evolve first: an unknown type touches no state and is counted."""
    before = sample("nudge_events_ignored_total", {"reason": "unknown_type"})
    await rig.event(type="wishlist.added", user_id="u-8")
    assert rig.store.data == {}
    assert rig.sink.dead_letters == []
    assert sample("nudge_events_ignored_total", {"reason": "unknown_type"}) == before + 1


async def test_an_engine_failure_dead_letters_the_record_and_keeps_going(rig: Rig) -> None:
    """An unexpected exception is `processing_error` on the DLT, not a stopped stream."""
    rig.engine.fail_on = "user.logged_in"
    await rig.event(type="user.logged_in", user_id="u-9")
    await rig.event(type="order.completed", user_id="u-9", properties=ORDER)
    assert [d.reason for d in rig.sink.dead_letters] == ["processing_error"]
    assert "RuntimeError: engine bug" in rig.sink.dead_letters[0].message
    assert len(rig.commands()) == 1


async def test_deliveries_reach_the_engine_and_bad_ones_the_deliveries_dlt(rig: Rig) -> None:
    """Delivery records feed state; undecodable ones are dead-lettered from deliveries."""
    record = {
        "command_id": "c-1",
        "idempotency_key": "k-1",
        "user_id": "u-10",
        "status": "bounced",
        "attempt": 1,
        "at": "2026-11-22T10:00:00+00:00",
        "smtp_enhanced_code": "5.1.1",
    }
    await rig.feed(TOPICS.deliveries, orjson.dumps(record), key=b"u-10")
    await rig.feed(TOPICS.deliveries, b"[]", key=b"u-10")
    assert [d.status for d in rig.engine.deliveries] == ["bounced"]
    assert [d.record.topic for d in rig.sink.dead_letters] == [TOPICS.deliveries]


async def test_policy_changes_are_published_keyed_by_user(rig: Rig) -> None:
    """outcome.policy goes to the compacted contact-policy topic."""
    await rig.event(type="user.unsubscribed", user_id="u-11", properties={"scope": "marketing"})
    [out] = rig.sink.on(TOPICS.internal("contact-policy"))
    assert out.key == b"u-11"
    assert orjson.loads(out.value)["marketing_allowed"] is False


async def test_an_order_right_after_a_reminder_withdraws_it_and_is_counted(rig: Rig) -> None:
    """The order's contact-policy record withdraws the cart reminder still maybe waiting in the
    sender, and `nudge_withdrawals_total` counts it by journey."""
    before = sample("nudge_withdrawals_total", {"journey": "cart_abandonment"})
    await rig.event(type="cart.item_added", user_id="u-12", properties=CART)
    await rig.tick()
    rig.clock.advance(seconds=61)
    await rig.tick()
    await rig.tick()
    assert [c["step"] for c in rig.commands()] == ["reminder_1"]
    await rig.event(type="order.completed", user_id="u-12", properties=ORDER)
    *_, last = rig.sink.on(TOPICS.internal("contact-policy"))
    assert orjson.loads(last.value)["withdrawn"] == ["cart_abandonment"]
    assert sample("nudge_withdrawals_total", {"journey": "cart_abandonment"}) == before + 1


async def test_deletion_erases_the_state_and_cancels_timers(rig: Rig) -> None:
    """outcome.state None deletes the user's key and pending wake-up."""
    await rig.event(type="cart.item_added", user_id="u-12", properties=CART)
    await rig.tick()
    await rig.event(type="user.deleted", user_id="u-12")
    assert b"u-12" not in rig.store.data
    assert rig.index.pending(0) == 0


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_tick_fires_at_most_fire_limit_users(rig: Rig, limit: int) -> None:
    """A burst is spread over ticks so events keep flowing between them."""
    object.__setattr__(rig.handler.config, "fire_limit", limit)
    for n in range(5):
        await rig.event(type="cart.item_added", user_id=f"u-b{n}", properties=CART)
    await rig.tick()
    rig.clock.advance(minutes=2)
    await rig.tick()
    assert len(rig.commands()) == limit
    for _ in range(5):
        await rig.tick()
    assert len(rig.commands()) == 5


async def test_a_batch_sees_its_own_writes_and_stores_each_user_once(rig: Rig) -> None:
    """Within one batch a user's second record reads the first one's result; the state is
    written once, after the batch's commands were published."""
    from nudge.processor.ports import Record

    def record(n: int, type_: str, **props: object) -> Record:
        value = orjson.dumps(
            {
                "event_id": f"e-{n}",
                "type": type_,
                "user_id": "u-20",
                "occurred_at": rig.clock.now().isoformat(),
                "properties": props,
            }
        )
        return Record(topic=TOPICS.events, partition=0, offset=n, key=b"u-20", value=value)

    await rig.handler.handle_batch(
        [record(1, "cart.item_added", **CART), record(2, "order.completed", **ORDER)]
    )
    assert [c["journey"] for c in rig.commands()] == ["order_confirmation"]
    assert rig.store.writes == 1
    assert rig.sink.writes_at_publish == [0]
    assert unpack(rig.store.data[b"u-20"]).wake_at is None
    assert rig.index.pending(0) == 0 or not rig.index.loaded(0)


async def test_an_engine_failure_on_a_timer_is_counted_and_the_tick_goes_on(rig: Rig) -> None:
    """A failing on_due is logged and counted; other users' timers in the same tick still fire,
    and the failing user's state (with its wake-up) stays in the table for a later retry."""
    await rig.event(type="cart.item_added", user_id="u-30", properties=CART)
    await rig.tick()
    rig.engine.fail_on = "due"
    before = sample("nudge_processing_errors_total", {"source": "ticks"})
    rig.clock.advance(minutes=2)
    await rig.tick()
    assert sample("nudge_processing_errors_total", {"source": "ticks"}) == before + 1
    assert rig.commands() == []
    assert unpack(rig.store.data[b"u-30"]).wake_at is not None
    rig.engine.fail_on = None
    restarted = rig.with_handler()
    await restarted.tick()
    assert [c["user_id"] for c in restarted.commands()] == ["u-30"]


async def test_a_failed_timer_is_tried_again_a_minute_later_in_the_same_worker(rig: Rig) -> None:
    """No rebalance needed: once the failure goes away, the next try sends the step."""
    from nudge.processor.handler import TIMER_RETRY_FIRST

    await rig.event(type="cart.item_added", user_id="u-31", properties=CART)
    await rig.tick()
    rig.engine.fail_on = "due"
    rig.clock.advance(minutes=2)
    await rig.tick()
    rig.engine.fail_on = None
    rig.clock.advance(seconds=TIMER_RETRY_FIRST - 1)
    await rig.tick()
    assert rig.commands() == []  # not yet: the retry is a minute after the failure
    rig.clock.advance(seconds=1)
    await rig.tick()
    assert [c["user_id"] for c in rig.commands()] == ["u-31"]


async def test_a_timer_that_keeps_failing_is_tried_less_often_up_to_once_an_hour(
    rig: Rig,
) -> None:
    from nudge.processor.handler import TIMER_RETRY_FIRST, TIMER_RETRY_MAX

    await rig.event(type="cart.item_added", user_id="u-32", properties=CART)
    await rig.tick()
    rig.engine.fail_on = "due"
    rig.clock.advance(minutes=2)
    waits = []
    for _ in range(9):
        before = sample("nudge_processing_errors_total", {"source": "ticks"})
        await rig.tick()
        assert sample("nudge_processing_errors_total", {"source": "ticks"}) == before + 1
        wait = rig.index.next_due(0) - rig.clock.now().timestamp()
        waits.append(wait)
        rig.clock.advance(seconds=wait)
    doubling = [TIMER_RETRY_FIRST * 2**n for n in range(6)]  # 1 min … 32 min
    assert waits == [*doubling, TIMER_RETRY_MAX, TIMER_RETRY_MAX, TIMER_RETRY_MAX]
    assert rig.commands() == []


def rebalance(rig: Rig, assigned: set[int]) -> None:
    """What a new assignment does to the worker (app.py's `on_assigned`)."""
    rig.assigned.clear()
    rig.assigned.update(assigned)
    rig.index.forget()
    rig.planner.reset()
    rig.handler.forget_partitions(keep=rig.assigned)


@pytest.mark.parametrize(
    ("away", "doublings"),
    [(set(), 1), ({0}, 0)],
    ids=["partition kept: the back-off goes on", "partition away and back: it starts again"],
)
async def test_the_back_off_of_a_failing_timer_counts_failures_while_its_partition_stays(
    rig: Rig, away: set[int], doublings: int
) -> None:
    """Across a rebalance that keeps the user's partition the wait goes on doubling; once the
    partition was taken away and came back, its next failure waits a minute again (the worker
    kept nothing of the partitions it lost)."""
    from nudge.processor.handler import TIMER_RETRY_FIRST

    await rig.event(type="cart.item_added", user_id="u-33", properties=CART)
    await rig.tick()
    rig.engine.fail_on = "due"
    rig.clock.advance(minutes=2)
    await rig.tick()
    assert rig.index.next_due(0) == rig.clock.now().timestamp() + TIMER_RETRY_FIRST
    rebalance(rig, {0, 1} - away)
    rebalance(rig, {0, 1})
    await rig.tick()  # reloads the index from the table: the wake-up is overdue, tried at once
    wait = rig.index.next_due(0) - rig.clock.now().timestamp()
    assert wait == TIMER_RETRY_FIRST * 2**doublings


async def test_a_timer_burst_sends_as_it_fires_and_stores_after_all_of_it(rig: Rig) -> None:
    """A tick firing many users hands their commands over every FIRE_YIELD_EVERY users, and
    stores the users' new states only after the last chunk."""
    from nudge.processor.handler import FIRE_YIELD_EVERY

    users = 2 * FIRE_YIELD_EVERY + 10
    for n in range(users):
        await rig.event(type="cart.item_added", user_id=f"u-t{n}", properties=CART)
    await rig.tick()  # loads the due index
    rig.clock.advance(minutes=2)
    before = rig.store.writes
    rig.sink.writes_at_publish.clear()
    await rig.tick()
    assert len(rig.commands()) == users
    assert rig.sink.writes_at_publish == [before, before, before]
    assert rig.store.writes == before + users


async def test_a_batch_is_decided_at_one_now_and_after_a_tick_at_a_later_one(rig: Rig) -> None:
    """The clock is read once per batch, and again after a timer burst, never going back."""
    from nudge.processor.ports import Record

    class SteppingClock:
        def __init__(self) -> None:
            self.current = rig.clock.now()

        def now(self) -> datetime:
            self.current += timedelta(seconds=1)
            return self.current

    rig.handler.clock = SteppingClock()

    def order(n: int, user: str) -> Record:
        value = orjson.dumps(
            {
                "event_id": f"e-{n}",
                "type": "order.completed",
                "user_id": user,
                "occurred_at": rig.clock.now().isoformat(),
                "properties": ORDER,
            }
        )
        return Record(topic=TOPICS.events, partition=0, offset=n, key=user.encode(), value=value)

    tick = Record(topic=TOPICS.internal("ticks"), partition=0, offset=0, key=None, value=b"")
    await rig.handler.handle_batch([order(1, "u-a"), order(2, "u-b"), tick, order(3, "u-c")])
    first, second, third = (c["created_at"] for c in rig.commands())
    assert first == second
    assert third > second


async def test_a_user_decided_just_before_the_tick_that_loads_their_partition_keeps_the_timer(
    rig: Rig,
) -> None:
    """After a rebalance the first tick loads a partition's due index from the table. A cart
    added earlier in the same batch is not stored yet: the index takes its new wake-up from the
    batch, not the table's older state, and the reminder fires."""
    add = rig.event_record(type="cart.item_added", user_id="u-40", properties=CART)
    await rig.handler.handle_batch([add, rig.tick_record()])
    assert rig.index.pending(0) == 1
    rig.clock.advance(minutes=2)
    await rig.tick()
    assert [(c["user_id"], c["step"]) for c in rig.commands()] == [("u-40", "reminder_1")]


async def test_a_user_deleted_just_before_the_tick_that_loads_their_partition_gets_no_timer(
    rig: Rig,
) -> None:
    """The same batch's deletion counts too: the table still holds the user's pending reminder,
    and the index loaded by the tick must not bring it back."""
    await rig.event(type="cart.item_added", user_id="u-41", properties=CART)
    restarted = rig.with_handler()  # a new worker: nothing loaded, the reminder in the table
    deleted = restarted.event_record(type="user.deleted", user_id="u-41")
    await restarted.handler.handle_batch([deleted, restarted.tick_record()])
    assert restarted.index.pending(0) == 0
    restarted.clock.advance(minutes=2)
    await restarted.tick()
    assert restarted.commands() == []
    assert b"u-41" not in restarted.store.data


# -- an outcome that cannot be encoded or stored: per-record failures, not broker outages --------
U64_MAX = 2**64 - 1  # the largest integer the codecs encode (and `decode_event` accepts)


def huge_cart(**overrides: object) -> dict[str, object]:
    return {**CART, **overrides}


async def test_an_event_whose_new_state_cannot_be_encoded_is_dead_lettered(rig: Rig) -> None:
    """Two valid cart events for one product add up to a quantity no codec encodes: the second
    is dead-lettered `processing_error` (counted, logged), the user's state stays the first
    one's, and the batch goes on with the next record."""
    await rig.event(type="cart.item_added", user_id="u-50", properties=huge_cart(quantity=U64_MAX))
    stored = rig.store.data[b"u-50"]
    errors = sample("nudge_processing_errors_total", {"source": "events"})
    poison = rig.event_record(
        type="cart.item_added", user_id="u-50", properties=huge_cart(quantity=U64_MAX)
    )
    after = rig.event_record(type="order.completed", user_id="u-51", properties=ORDER)
    await rig.handler.handle_batch([poison, after])
    assert [(d.record, d.reason) for d in rig.sink.dead_letters] == [(poison, "processing_error")]
    assert "Integer exceeds 64-bit range" in rig.sink.dead_letters[0].message
    assert sample("nudge_processing_errors_total", {"source": "events"}) == errors + 1
    assert rig.store.data[b"u-50"] == stored
    assert [c["user_id"] for c in rig.commands()] == ["u-51"]


async def test_an_event_whose_command_cannot_be_encoded_leaves_nothing_of_its_outcome(
    rig: Rig,
) -> None:
    """An order whose confirmation cannot be encoded (the cart's total beyond 64 bits) is
    dead-lettered whole: no command, and neither the state it would have stored nor the
    cancelled reminder (the index keeps it)."""
    total = huge_cart(price=10**18, quantity=100)  # each fits in 64 bits, their product not
    await rig.event(type="cart.item_added", user_id="u-52", properties=total)
    await rig.tick()
    stored = rig.store.data[b"u-52"]
    await rig.event(type="order.completed", user_id="u-52", properties=ORDER)
    assert [d.reason for d in rig.sink.dead_letters] == ["processing_error"]
    assert rig.commands() == []
    assert rig.store.data[b"u-52"] == stored
    assert rig.index.pending(0) == 1


async def test_a_delivery_whose_new_state_cannot_be_encoded_is_dead_lettered(rig: Rig) -> None:
    """The same for delivery records: dead-lettered to the deliveries DLT, state kept."""

    def delivery(attempt: int) -> bytes:
        return orjson.dumps(
            {
                "command_id": "c-1",
                "idempotency_key": "k-1",
                "user_id": "u-53",
                "status": "deferred",
                "attempt": attempt,
                "at": "2026-11-22T10:00:00+00:00",
            }
        )

    await rig.feed(TOPICS.deliveries, delivery(U64_MAX), key=b"u-53")
    stored = rig.store.data[b"u-53"]
    bad = await rig.feed(TOPICS.deliveries, delivery(1), key=b"u-53")
    assert [(d.record, d.reason) for d in rig.sink.dead_letters] == [(bad, "processing_error")]
    assert rig.store.data[b"u-53"] == stored


async def failed_firings_two_minutes_later(rig: Rig) -> float:
    """Let the reminders come due, tick, and count the timer firings that failed in that tick."""
    errors = sample("nudge_processing_errors_total", {"source": "ticks"})
    rig.clock.advance(minutes=2)
    await rig.tick()
    return sample("nudge_processing_errors_total", {"source": "ticks"}) - errors


async def test_a_timer_whose_command_cannot_be_encoded_is_retried_and_the_tick_goes_on(
    rig: Rig,
) -> None:
    """A reminder whose command cannot be encoded (a cart total beyond 64 bits) is counted and
    tried again a minute later, its wake-up kept in the table; the other users' reminders due in
    the same tick are sent."""
    from nudge.processor.handler import TIMER_RETRY_FIRST

    total = huge_cart(price=10**18, quantity=100)  # each fits in 64 bits, their product not
    await rig.event(type="cart.item_added", user_id="u-54", properties=total)
    await rig.event(type="cart.item_added", user_id="u-55", properties=CART)
    await rig.tick()
    stored = rig.store.data[b"u-54"]
    assert await failed_firings_two_minutes_later(rig) == 1
    assert [c["user_id"] for c in rig.commands()] == ["u-55"]
    assert rig.store.data[b"u-54"] == stored
    assert unpack(stored).wake_at is not None
    assert rig.index.next_due(0) == rig.clock.now().timestamp() + TIMER_RETRY_FIRST
    assert rig.sink.dead_letters == []


async def test_a_state_over_the_cap_is_not_stored_and_its_record_is_dead_lettered(
    rig: Rig,
) -> None:
    """Valid cart events (each well under the 64 KiB event limit) grow a state line by line;
    the one that would take it past MAX_STATE_BYTES is dead-lettered and the state stays the
    last one under the cap. Smaller events of that user still go through."""
    from nudge.processor.handler import MAX_STATE_BYTES

    name = "x" * 63_000
    for n in range(MAX_STATE_BYTES // 63_000 + 2):
        line = huge_cart(product_id=f"p-{n}", name=name)
        await rig.event(type="cart.item_added", user_id="u-56", properties=line)
        if rig.sink.dead_letters:
            break
    assert [d.reason for d in rig.sink.dead_letters] == ["processing_error"]
    assert "cap" in rig.sink.dead_letters[0].message
    stored = rig.store.data[b"u-56"]
    assert len(stored) <= MAX_STATE_BYTES
    assert len(unpack(stored).state) > MAX_STATE_BYTES - 63_000 - 1_000
    await rig.event(type="order.completed", user_id="u-56", properties=ORDER)
    assert [c["user_id"] for c in rig.commands()] == ["u-56"]


async def test_a_timer_whose_command_is_over_the_cap_is_retried(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records an outcome produces have a cap too (a refused one would stop the worker):
    a reminder over it is counted and retried like any failed timer, nothing sent or stored."""
    from nudge.processor import handler

    monkeypatch.setattr(handler, "MAX_OUTPUT_BYTES", 300)
    await rig.event(type="cart.item_added", user_id="u-57", properties=CART)
    await rig.tick()
    stored = rig.store.data[b"u-57"]
    assert await failed_firings_two_minutes_later(rig) == 1
    assert rig.commands() == []
    assert rig.store.data[b"u-57"] == stored


# -- per-partition gauges follow the assignment ------------------------------------------------
def gauge(name: str, partition: int) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, {"partition": str(partition)})


async def test_a_revoked_partition_is_no_longer_reported() -> None:
    """After a rebalance takes partition 8 away, this worker exports no pending-timer or
    table-key series for it (the worker that has 8 now does), so sums across workers count it
    once."""
    rig = new_rig(assigned={7, 8})
    await rig.event(type="cart.item_added", user_id="u-60", properties=CART, partition=8)
    await rig.tick(partition=7)  # loads 7 and 8
    assert gauge("nudge_pending_timers", 8) == 1
    assert gauge("nudge_table_keys", 8) == 1
    rig.assigned.discard(8)  # the rebalance: Faust's on_partitions_assigned
    rig.index.forget()
    await rig.tick(partition=7)  # reloads the index of what is assigned
    assert gauge("nudge_pending_timers", 8) is None
    assert gauge("nudge_table_keys", 8) is None
    assert gauge("nudge_table_keys", 7) == 0


async def test_a_partition_that_comes_back_is_counted_afresh_from_the_table() -> None:
    """Users another worker added to a partition while it was away are in its count when it
    comes back; the count this worker had before is forgotten, not carried on."""
    rig = new_rig(assigned={7, 8})
    await rig.event(type="user.logged_in", user_id="u-61", partition=8)
    await rig.tick(partition=7)
    assert gauge("nudge_table_keys", 8) == 1
    rig.assigned.discard(8)  # 8 moves to another worker …
    rig.handler.forget_partitions(keep=rig.assigned)
    other = rig.with_handler(assigned={8})
    await other.event(type="user.logged_in", user_id="u-62", partition=8)  # … which adds a user
    rig.assigned.add(8)  # 8 comes back
    rig.index.forget()
    await rig.event(type="user.logged_in", user_id="u-63", partition=8)
    assert gauge("nudge_table_keys", 8) is None  # not loaded yet: no stale count + 1
    await rig.tick(partition=7)
    assert gauge("nudge_table_keys", 8) == 3
