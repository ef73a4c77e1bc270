"""Contract §4: GET /api/v1/{store} — creation order, offset, limit, only, meta, time bounds."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.api import unique
from tests.support.asserts import assert_envelope

@pytest.fixture(scope="module")
def alice(client):
    return client.create_user(groups=["list-team"])


def create(client, user, store, body=None):
    response = client.http.post(f"/api/v1/{store}", json=body or {}, headers=user["auth"])
    assert response.status_code == 201, response.text
    return response.json()


def listing(client, user, store, **params):
    response = client.http.get(f"/api/v1/{store}", params=params, headers=user["auth"])
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def filled(client, alice):
    """A store of 30 entities made in order, with n = 0..29."""
    store = unique("list")
    made = [create(client, alice, store, {"n": n, "keep": n % 3, "other": "x"}) for n in range(30)]
    return store, made


def ids(items):
    return [item["_id"] for item in items]


def test_empty_store_lists_as_an_empty_array(client, alice):
    assert listing(client, alice, unique("nothing")) == []


def test_list_is_in_creation_order(client, alice, filled):
    store, made = filled
    assert listing(client, alice, store) == made
    assert listing(client, alice, store, offset=0) == made  # explicit default


def test_admin_lists_the_same_order(client, filled):
    store, made = filled
    assert listing(client, {"auth": client.as_admin()}, store) == made


def test_offset_and_limit_page_through(client, alice, filled):
    store, made = filled
    assert ids(listing(client, alice, store, offset=5, limit=3)) == ids(made[5:8])
    assert ids(listing(client, alice, store, limit=1)) == ids(made[:1])
    assert ids(listing(client, alice, store, offset=28)) == ids(made[28:])
    assert listing(client, alice, store, offset=30) == []
    assert listing(client, alice, store, offset=1000) == []
    pages = [listing(client, alice, store, offset=o, limit=7) for o in range(0, 30, 7)]
    assert [item for page in pages for item in page] == made


@pytest.mark.parametrize("who", ["user", "admin"])
def test_limit_zero_is_an_empty_page(client, alice, filled, who):
    store, _ = filled
    user = alice if who == "user" else {"auth": client.as_admin()}
    assert listing(client, user, store, limit=0) == []


@pytest.mark.parametrize("who", ["user", "admin"])
def test_a_huge_offset_is_an_empty_page_not_an_error(client, alice, filled, who):
    store, _ = filled
    user = alice if who == "user" else {"auth": client.as_admin()}
    assert listing(client, user, store, offset=10**25) == []
    assert listing(client, user, store, **{"from": 10**25}) == []
    assert listing(client, user, store, to=-(10**25)) == []


def test_limit_10000_is_the_maximum_and_the_default(client, alice):
    store = unique("many")
    # 10001 entities straight into Redis would bypass the API; instead prove the default by
    # size: the default page equals limit=10000 and both are accepted.
    create(client, alice, store)
    assert listing(client, alice, store, limit=10000) == listing(client, alice, store)


@pytest.mark.parametrize("params", [{"limit": "10001"}, {"limit": "-1"}, {"limit": "abc"},
                                    {"limit": "1.5"}, {"limit": ""}, {"limit": "1e3"},
                                    {"offset": "-1"}, {"offset": "abc"}, {"offset": ""},
                                    {"limit": ["1", "2"]}, {"limit": "9" * 5000},
                                    {"offset": "9" * 5000}, {"meta": "yes"}, {"only": ""},
                                    {"only": ",,"}, {"sort": "n"}])
def test_bad_paging_parameters_are_400(client, alice, filled, params):
    store, _ = filled
    response = client.http.get(f"/api/v1/{store}", params=params, headers=alice["auth"])
    assert_envelope(response, 400)


def test_only_keeps_the_id_and_the_named_fields(client, alice, filled):
    store, made = filled
    items = listing(client, alice, store, only="n,keep", limit=3)
    assert items == [{"_id": e["_id"], "n": e["n"], "keep": e["keep"]} for e in made[:3]]
    assert listing(client, alice, store, only="n", limit=1) == [{"_id": made[0]["_id"], "n": 0}]
    # System fields may be asked for; a missing field is simply absent.
    assert listing(client, alice, store, only="owner,missing", limit=1) == [
        {"_id": made[0]["_id"], "owner": alice["_id"]}]
    assert listing(client, alice, store, only=" n , keep ", limit=1) == [
        {"_id": made[0]["_id"], "n": 0, "keep": 0}]


def test_meta_counts_the_range_and_gives_first_and_last(client, alice, filled):
    store, made = filled
    assert listing(client, alice, store, meta="true") == {
        "total": 30, "first": made[0], "last": made[-1]}
    assert listing(client, {"auth": client.as_admin()}, store, meta="true") == {
        "total": 30, "first": made[0], "last": made[-1]}


def test_meta_of_an_empty_store_is_zero_and_nulls(client, alice):
    assert listing(client, alice, unique("void"), meta="true") == {
        "total": 0, "first": None, "last": None}
    assert listing(client, {"auth": client.as_admin()}, unique("void"), meta="true") == {
        "total": 0, "first": None, "last": None}


def test_meta_false_is_a_plain_list(client, alice, filled):
    store, made = filled
    assert listing(client, alice, store, meta="false", limit=2) == made[:2]


@pytest.mark.parametrize("params", [{"offset": "0"}, {"limit": "5"}, {"offset": "1", "limit": "1"}])
def test_meta_with_offset_or_limit_is_400(client, alice, filled, params):
    store, _ = filled
    response = client.http.get(f"/api/v1/{store}", params={"meta": "true", **params},
                               headers=alice["auth"])
    assert_envelope(response, 400)


# --- creation-time bounds ------------------------------------------------------------------

@pytest.fixture(scope="module")
def timed(client, alice, redis_client):
    """Three entities made ~30 ms apart, with their creation times in ms as the index has them."""
    store = unique("timed")
    made = []
    for n in range(3):
        made.append(create(client, alice, store, {"n": n}))
        time.sleep(0.03)
    times = [int(redis_client.zscore(f"gw:ix:{store}", e["_id"])) for e in made]
    assert times == sorted(times) and times[0] < times[1] < times[2]
    for entity, ms in zip(made, times):
        assert int(entity["_id"][:8], 16) == ms // 1000  # the id's seconds agree
    return store, made, times


def iso(ms, tz=timezone.utc, fmt=None):
    when = datetime.fromtimestamp(0, tz) + timedelta(milliseconds=ms)
    text = when.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if fmt == "Z" else text


@pytest.mark.parametrize("lo,hi", [("from", "to"), ("begin", "end")])
def test_bounds_in_milliseconds_are_inclusive(client, alice, timed, lo, hi):
    store, made, t = timed
    assert listing(client, alice, store, **{lo: t[1], hi: t[1]}) == [made[1]]
    assert listing(client, alice, store, **{lo: t[1]}) == made[1:]
    assert listing(client, alice, store, **{hi: t[1]}) == made[:2]
    assert listing(client, alice, store, **{lo: t[0] + 1, hi: t[2] - 1}) == [made[1]]
    assert listing(client, alice, store, **{lo: t[2] + 1}) == []
    assert listing(client, alice, store, **{lo: t[0], hi: t[2]}) == made


@pytest.mark.parametrize("fmt", ["Z", "+00:00", "+05:30", "-08:00"])
def test_bounds_in_iso_8601_are_inclusive_to_the_millisecond(client, alice, timed, fmt):
    store, made, t = timed
    tz = {"Z": timezone.utc, "+00:00": timezone.utc,
          "+05:30": timezone(timedelta(hours=5, minutes=30)),
          "-08:00": timezone(timedelta(hours=-8))}[fmt]
    for k in range(3):
        got = listing(client, alice, store, **{"from": iso(t[k], tz, fmt), "to": iso(t[k], tz, fmt)})
        assert got == [made[k]], (k, iso(t[k], tz, fmt))
    assert listing(client, alice, store, begin=iso(t[1], tz, fmt)) == made[1:]
    assert listing(client, alice, store, end=iso(t[1] - 1, tz, fmt)) == made[:1]


def test_iso_without_an_offset_is_utc_and_dates_alone_work(client, alice, timed):
    store, made, t = timed
    naive = iso(t[1]).replace("+00:00", "")
    assert listing(client, alice, store, **{"from": naive, "to": naive}) == [made[1]]
    today = datetime.fromtimestamp(t[0] / 1000, timezone.utc).date()
    tomorrow = today + timedelta(days=1)
    assert listing(client, alice, store, **{"from": today.isoformat(),
                                            "to": tomorrow.isoformat()}) == made
    assert listing(client, alice, store, to="2001-01-01") == []


def test_bounds_combine_with_offset_limit_and_meta(client, alice, timed):
    store, made, t = timed
    assert listing(client, alice, store, **{"from": t[1], "limit": 1}) == [made[1]]
    assert listing(client, alice, store, **{"from": t[0], "offset": 2}) == [made[2]]
    assert listing(client, alice, store, **{"from": t[1], "meta": "true"}) == {
        "total": 2, "first": made[1], "last": made[2]}


@pytest.mark.parametrize("params", [{"from": "yesterday"}, {"to": "2024-13-01"},
                                    {"begin": "2024-01-01T25:00:00Z"}, {"end": ""},
                                    {"from": "1.5e12"}, {"to": "NaN"},
                                    {"from": "1", "begin": "2"}, {"to": "1", "end": "2"},
                                    {"from": "2000", "to": "1000"}, {"from": ["1", "2"]},
                                    {"from": "9" * 5000}, {"to": "-" + "9" * 5000}])
def test_bad_bounds_are_400(client, alice, timed, params):
    store, _, _ = timed
    response = client.http.get(f"/api/v1/{store}", params=params, headers=alice["auth"])
    assert_envelope(response, 400)


def test_list_needs_credentials(client, timed):
    store, _, _ = timed
    assert_envelope(client.http.get(f"/api/v1/{store}"), 401)
