"""The Idempotency-Key header of POSTs (IETF httpapi draft): the same key with
the same job gives the first job's id and 202 again, with another job 422; a
bad key is 400; the key lives SURGE_RESULT_TTL_SECONDS in
`surge:idem:{key}`, written by the enqueue script itself, so that a retry
after a 503 whose job Redis did queue finds that job."""

import json
import signal

import pytest

from helpers import Client, assert_error, http, queued, wait_for

KEY = "5f0c1d4e-8a3b-4c2d-9e7f-0a1b2c3d4e5f"


def post(port, path, body, key=KEY, **kw):
    headers = {"Idempotency-Key": key} if key is not None else None
    return http(port, "POST", path, body, headers=headers, **kw)


def accepted(r):
    assert r.status == 202, r
    job = r.json()
    assert r.header("location") == f"/jobs/{job['id']}", r
    return job


def queue(redis):
    return queued(redis)


def test_same_key_same_job_gives_the_first_job_again(api, redis):
    first = post(api.http_port, "/jobs/read", {"item_id": 7})
    job = accepted(first)
    assert first.header("idempotent-replayed") is None, first
    for body in ({"item_id": 7}, '{ "item_id" : 7 }'):
        again = post(api.http_port, "/jobs/read", body)
        assert accepted(again) == job, again
        assert again.header("idempotent-replayed") == "true", again
    # The same job asked through POST /jobs is the same request.
    again = post(api.http_port, "/jobs", {"type": "read", "params": {"item_id": 7}})
    assert accepted(again) == job
    # The draft's form: the key as a structured-field string.
    again = post(api.http_port, "/jobs/read", {"item_id": 7}, key=f'"{KEY}"')
    assert accepted(again) == job
    assert queue(redis) == [job["id"]]


def test_same_key_another_job_is_422(api, redis):
    job = accepted(post(api.http_port, "/jobs/burn", {"seconds": 2}))
    for path, body in (("/jobs/burn", {"seconds": 3}), ("/jobs/read", {"item_id": 1}),
                       ("/jobs", {"type": "read", "params": {"item_id": 2}})):
        r = post(api.http_port, path, body)
        assert_error(r, 422, "idempotency_key_reused")
    assert queue(redis) == [job["id"]]
    # The first job is still the key's.
    assert accepted(post(api.http_port, "/jobs/burn", {"seconds": 2})) == job


def test_other_keys_and_no_key_make_new_jobs(api, redis):
    a = accepted(post(api.http_port, "/jobs/read", {"item_id": 3}, key="key-a"))
    b = accepted(post(api.http_port, "/jobs/read", {"item_id": 3}, key="key-b"))
    c = accepted(post(api.http_port, "/jobs/read", {"item_id": 3}, key=None))
    d = accepted(post(api.http_port, "/jobs/read", {"item_id": 3}, key=None))
    assert len({a["id"], b["id"], c["id"], d["id"]}) == 4
    assert sorted(redis.lines("KEYS", "surge:idem:*")) == ["surge:idem:key-a", "surge:idem:key-b"]


def test_the_key_lives_as_long_as_a_result(surge, redis):
    api = surge.api(SURGE_RESULT_TTL_SECONDS=600)
    job = accepted(post(api.http_port, "/jobs/read", {"item_id": 5}))
    ttl = int(redis.cli("TTL", f"surge:idem:{KEY}"))
    assert 590 <= ttl <= 600, ttl
    value = redis.cli("GET", f"surge:idem:{KEY}")
    job_id, _, digest = value.partition(" ")
    assert job_id == job["id"] and len(digest) == 40, value
    # Gone: a new job for the same key.
    redis.cli("DEL", f"surge:idem:{KEY}")
    assert accepted(post(api.http_port, "/jobs/read", {"item_id": 5}))["id"] != job["id"]


@pytest.mark.parametrize("key", [
    "", " ", '""', "a b", "*", "é", "key\\x", 'a"b', '"unbalanced', "x" * 256, '"' + "y" * 256 + '"',
    "z" * 600,
])
def test_bad_keys_are_400(api, redis, key):
    r = post(api.http_port, "/jobs/read", {"item_id": 1}, key=key.encode("utf-8").decode("latin-1"))
    err = assert_error(r, 400, "bad_idempotency_key")
    assert "Idempotency-Key" in err["message"], err
    assert queue(redis) == []


def test_longest_key_and_every_character_are_accepted(api, redis):
    longest = "k" * 255
    every = "AZaz09-_.:~+/="
    for key in (longest, every, f'"{every}"', f"  {every}\t"):
        accepted(post(api.http_port, "/jobs/read", {"item_id": 1}, key=key))
    assert len(queue(redis)) == 2


def test_two_key_headers_are_400(api, redis):
    body = b'{"item_id":1}'
    with Client(api.http_port) as c:
        c.send(b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Idempotency-Key: one\r\nIdempotency-Key: two\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert_error(c.read(), 400, "bad_idempotency_key")
    assert queue(redis) == []


def test_a_retry_after_a_503_finds_the_job_redis_queued(surge, redis):
    """Redis stalls past the deadline after the enqueue script ran: the api
    answered 503, yet the job is queued. The client's retry with the same key
    must get that job, not make a second one."""
    api = surge.api(SURGE_REDIS_TIMEOUT_MS=300)
    wait_for(lambda: http(api.admin_port, "GET", "/readyz").status == 200, 15,
             message="the api ready")
    body = {"type": "burn", "params": {"seconds": 1}}
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        r = post(api.http_port, "/jobs", body, timeout=10)
        assert_error(r, 503, "unavailable")
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    # Redis runs the script it had received before the api gave up.
    wait_for(lambda: len(queue(redis)) == 1, 15, message="the first request's job in the queue")
    queued = queue(redis)[0]

    def retry():
        r = post(api.http_port, "/jobs", body, timeout=10)
        return r if r.status != 503 else None
    r = wait_for(retry, 30, interval=0.5, message="a retry that is not 503")
    assert accepted(r)["id"] == queued, (r, queued)
    assert r.header("idempotent-replayed") == "true", r
    assert queue(redis) == [queued], "the retry made a second job"
    assert json.loads(redis.hgetall(f"surge:job:{queued}")["params"]) == {"seconds": 1}
