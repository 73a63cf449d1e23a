"""The servers the other tests stand on: the seeded items table matches the
documented read result, and Redis keeps its data across a restart."""


def test_items_seeded_as_documented(postgres):
    assert postgres.psql("SELECT count(*) FROM items") == "100000"
    # docs/architecture.md gives this row as the result of a read of item 42.
    assert postgres.item_json(42) == {
        "id": 42, "name": "item-42", "price_cents": 32598, "stock": 302,
        "updated_at": "2026-01-01T00:42:00+00:00",
    }
    assert postgres.item_json(100001) is None


def test_redis_append_only_survives_restart(redis):
    assert redis.cli("CONFIG", "GET", "appendonly").split("\n") == ["appendonly", "yes"]
    redis.cli("RPUSH", "surge:queue:read", "a", "b")
    port = redis.port
    redis.stop()
    redis.start()
    assert redis.port == port
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == ["a", "b"]
