"""The per-action key filters that let new rows skip ON CONFLICT: pure logic."""

from __future__ import annotations

from stream_agents.fresh_keys import FreshKeys, KeyFilter


def keys(start: int, stop: int) -> list[str]:
    return [f"user{i}@example.com" for i in range(start, stop)]


def test_a_key_added_before_is_always_held_across_stages() -> None:
    found = KeyFilter(first_capacity=1_000)  # grows through several stages
    for start in range(0, 100_000, 2_500):
        assert not found.add(keys(start, start + 2_500)).all()
    for start in range(0, 100_000, 10_000):
        assert found.add(keys(start, start + 10_000)).all()


def test_new_keys_are_rarely_held() -> None:
    found = KeyFilter()
    for start in range(0, 1_000_000, 10_000):
        found.add(keys(start, start + 10_000))
    held = found.add(keys(1_000_000, 1_100_000))
    assert held.sum() < 1_000, held.sum()  # under 1%
    assert found.nbytes < 4 << 20  # ~2 bytes a key, with stages to spare


def test_an_action_is_tracked_from_its_first_chunk_until_forgotten() -> None:
    fresh = FreshKeys()
    assert fresh.add("action", "email", ["a"]) is None
    fresh.start("action")
    assert fresh.add("action", "email", ["a", "b"]).tolist() == [False, False]
    assert fresh.add("action", "email", ["b", "c"]).tolist() == [True, False]
    assert fresh.add("action", "external_id", ["b"]).tolist() == [False]  # a filter per field
    fresh.forget("action")
    assert fresh.add("action", "email", ["a"]) is None


def test_past_the_budget_the_least_recently_used_actions_are_forgotten() -> None:
    one = KeyFilter()
    one.add(["a"])
    fresh = FreshKeys(budget_bytes=2 * one.nbytes)
    for action in ("first", "second"):
        fresh.start(action)
        fresh.add(action, "email", ["a"])
    fresh.add("first", "email", ["b"])  # used last: "second" is the oldest now
    fresh.start("third")
    fresh.add("third", "email", ["a"])
    assert fresh.add("second", "email", ["c"]) is None
    assert fresh.add("first", "email", ["c"]) is not None
    assert fresh.add("third", "email", ["c"]) is not None
