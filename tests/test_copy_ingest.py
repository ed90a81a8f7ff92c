"""Ingest over wh's own libpq connections, streamed by COPY (issue 24): every column type
round-trips equal, a source type other than the declared one arrives right or fails naming
the column, caps and deadlines hold mid-stream, a cancel or a killed source ends the call
at once and changes nothing, a thousand calls give back every descriptor, and the fan-out
holds at most wh.max_source_connections open."""

import datetime as dt
import os
import re
import struct
import threading
import time
from pathlib import Path

import psycopg
import pytest

import harness
from test_hostile_source import FakeServer, _recv

DAY = dt.date(2025, 7, 14)  # a fixed past day
DAY2 = DAY + dt.timedelta(days=1)

TYPES_DDL = r"""
DROP TABLE IF EXISTS public.wh_types;
DROP TYPE IF EXISTS public.wh_mood;
CREATE TYPE public.wh_mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.wh_types (
    id int PRIMARY KEY, t timestamptz NOT NULL,
    n numeric, n2 numeric(12,3), f8 float8, f4 real, i2 smallint, i8 bigint, bo boolean,
    d date, ts timestamp, tstz timestamptz, iv interval, u uuid,
    txt text, vc varchar(50), b bytea, j jsonb, js json, arr int[], tarr text[], m public.wh_mood,
    big int8
);
GRANT SELECT ON public.wh_types TO PUBLIC;
"""

# Every character 1..127 (tab, newline, backslash, quotes included) and multibyte ones.
ALL_ASCII = "".join(chr(i) for i in range(1, 128))
MULTI = "é€𝄞 ǅ ﬁ \u2028 \u00a0 日本語"

ROWS = [
    # id, n, n2, f8, f4, d, ts, tstz, iv, txt, arr, tarr, m, big
    (1, "NaN", "1.5", "NaN", "NaN", "infinity", "infinity", "-infinity", "1 year 2 mons 3 days 04:05:06.789",
     ALL_ASCII, "{1,NULL,3}", '{"a b","c\\"d",NULL,"e,f","\\\\"}', "happy", 5),
    (2, "Infinity", "-0.001", "Infinity", "-Infinity", "-infinity", "-infinity", "infinity", "-3 days -00:00:01",
     MULTI, "{}", "{}", "sad", -5),
    (3, "-Infinity", "123456789.123", "-Infinity", "3.4028235e38", "2024-02-29", "2024-02-29 23:59:59.999999",
     "2024-02-29 23:59:59.999999+00", "00:00:00.000001", "", "{{1,2},{3,4}}", '{"\\t","\\n"}', "ok", 0),
    (4, "0.1000000000000000000000000000000000001", "0", "0.1", "1e-45", "4713-01-01 BC", "294276-12-31 23:59:59",
     "1970-01-01 00:00:00+00", "178000000 years", "tab\there\nnewline\\back", None, None, None, None),
    (5, "-1e-130", None, "1e-308", "1.17549435e-38", None, None, None, None, None, None, None, None, 2147483647),
]

COLS = ("id int, t timestamptz, n numeric, n2 numeric(12,3), f8 float8, f4 real, i2 smallint, i8 bigint, bo boolean, "
        "d date, ts timestamp, tstz timestamptz, iv interval, u uuid, txt text, vc text, b bytea, j jsonb, js jsonb, "
        "arr int[], tarr text[], m text, small int4")
QUERY = ("SELECT id, t, n, n2, f8, f4, i2, i8, bo, d, ts, tstz, iv, u, txt, vc, b, j, js, arr, tarr, m::text AS m, "
         "big AS small FROM public.wh_types WHERE t >= '{TARGET_DATE}'::date AND t < '{TARGET_DATE}'::date + 1")
COMPARED = ["id", "t", "n", "n2", "f8", "f4", "i2", "i8", "bo", "d", "ts", "tstz", "iv", "u", "txt", "vc", "b", "j", "js",
            "arr", "tarr", "m"]


def fill_types(s):
    s.execute(TYPES_DDL)
    for i, (rid, n, n2, f8, f4, d, ts, tstz, iv, txt, arr, tarr, m, big) in enumerate(ROWS):
        s.execute(
            "INSERT INTO public.wh_types VALUES (%s, %s::date + make_interval(secs => %s), %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, gen_random_uuid(), %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (rid, DAY, 60 * i, n, n2, f8, f4, (rid * 1111) % 32767 if rid % 2 else None, rid * 10 ** 15,
             rid % 2 == 0, d, ts, tstz, iv, txt, (txt or "")[:50] or None,
             bytes(range(256)) * rid if rid != 5 else None,
             '{"k": [1, 2.50, "é\\u0000x"], "n": null, "t": "tab\\tq\\"u"}'.replace("\\u0000", "\\u0001"),
             '{"dup": 1, "dup": 2,  "ws" : [ ] }', arr, tarr, m, big))


@pytest.fixture(scope="module")
def cp(env):
    with env.source_super("tenant_a") as s:
        s.execute("SET TimeZone = 'UTC'")
        fill_types(s)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        c.execute("SELECT _wh.set_template('wh_types', %s, %s, 't', unique_key => 'id')", (QUERY, COLS))
    yield env
    with env.wh_admin() as c:
        c.execute("SELECT _wh.drop_template('wh_types')")
    with env.source_super("tenant_a") as s:
        s.execute("DROP TABLE IF EXISTS public.wh_types; DROP TYPE IF EXISTS public.wh_mood")


def as_text(conn, relation):
    """Every compared column as text; a source's json as the jsonb it is declared."""
    conn.execute("SET TimeZone = 'UTC'")
    cols = ", ".join("js::jsonb::text" if c == "js" else f"{c}::text" for c in COMPARED)
    return conn.execute(f"SELECT {cols} FROM {relation} ORDER BY id").fetchall()


def test_every_column_type_round_trips_equal(cp):
    with cp.wh_admin() as c:
        r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["rows"] == len(ROWS), r
        with cp.source_super("tenant_a") as s:
            source = as_text(s, "public.wh_types")
        stored = as_text(c, "tenant_a.wh_types")
        assert len(stored) == len(ROWS)
        for want, got in zip(source, stored):
            assert want == got, [(k, a, b) for k, a, b in zip(COMPARED, want, got) if a != b]
        # int8 into a declared int4 arrives as the same number while it fits.
        assert [x for (x,) in c.execute("SELECT small FROM tenant_a.wh_types ORDER BY id")] == [5, -5, 0, None, 2147483647]
        # The source's checksum, computed there over the declared types, agrees.
        v = c.execute("SELECT _wh.verify('wh_types', 'tenant_a', %s, %s)", (DAY, DAY)).fetchone()[0]
        assert v["details"]["drifted"] == [] and v["details"]["in_order"] == 1, v
        # Unchanged: a second refresh writes nothing.
        again = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        assert again["status"] == "succeeded" and again["details"]["action"] == "unchanged", again


BINARY_COLS = ("id int, t timestamptz, n numeric, n2 numeric(12,3), f8 float8, f4 real, i2 smallint, i8 bigint, bo boolean, "
               "d date, ts timestamp, tstz timestamptz, iv interval, u uuid, txt text, vc varchar(50), b bytea, j jsonb, "
               "js jsonb, arr int[], tarr text[], m text, big bigint")
BINARY_QUERY = ("SELECT id, t, n, n2, f8, f4, i2, i8, bo, d, ts, tstz, iv, u, txt, vc, b, j, js::jsonb AS js, arr, tarr, "
                "m::text AS m, big FROM public.wh_types WHERE t >= '{TARGET_DATE}'::date AND t < '{TARGET_DATE}'::date + 1")


def test_the_same_built_in_types_travel_binary_and_round_trip_equal(cp):
    """Every column of the source's answer has the declared built-in type: the COPY is
    binary (seen in the source's log), and every value is equal; the text COPY of the
    template above (an enum and an int8 into int4 among its columns) is text."""
    log = Path(cp.source.data).parent / "source.log"
    with cp.source_super("tenant_a") as s:
        s.execute("ALTER ROLE tenant_a_ro SET log_statement = 'all'")
    try:
        with cp.wh_admin() as c:
            c.execute("SELECT _wh.set_template('wh_types_bin', %s, %s, 't', unique_key => 'id')", (BINARY_QUERY, BINARY_COLS))
            try:
                mark = log.stat().st_size
                r = c.execute("SELECT _wh.refresh_mv('wh_types_bin', 'tenant_a', %s)", (DAY,)).fetchone()[0]
                assert r["status"] == "succeeded" and r["rows"] == len(ROWS), r
                with cp.source_super("tenant_a") as s:
                    source = as_text(s, "public.wh_types")
                assert as_text(c, "tenant_a.wh_types_bin") == source
                assert [x for (x,) in c.execute("SELECT big FROM tenant_a.wh_types_bin ORDER BY id")] == [5, -5, 0, None, 2147483647]
                r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
                assert r["status"] == "succeeded", r
                sent = log.read_bytes()[mark:].decode(errors="replace")
                entries = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:)", sent)
                copies = [e for e in entries if "statement: COPY (SELECT wh_g.wh_day" in e]
                fmt = {("binary" if "(FORMAT binary)" in x else "text"): x for x in copies}
                assert set(fmt) == {"binary", "text"}, copies
                assert "js::jsonb" in fmt["binary"] and "big AS small" in fmt["text"], copies
                v = c.execute("SELECT _wh.verify('wh_types_bin', 'tenant_a', %s, %s)", (DAY, DAY)).fetchone()[0]
                assert v["details"]["drifted"] == [] and v["details"]["in_order"] == 1, v
            finally:
                c.execute("SELECT _wh.drop_template('wh_types_bin')")
    finally:
        with cp.source_super("tenant_a") as s:
            s.execute("ALTER ROLE tenant_a_ro RESET log_statement")


def test_a_value_the_declared_type_cannot_take_names_the_column(cp):
    with cp.source_super("tenant_a") as s:
        s.execute("INSERT INTO public.wh_types (id, t, big) VALUES (6, %s::date + interval '1 hour', 3000000000)", (DAY2,))
    try:
        with cp.wh_admin() as c:
            r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY2,)).fetchone()[0]
            assert r["status"] == "failed" and r["sqlstate"] == "22003", r
            assert "out of range for type integer" in r["error"] and "small" in r["error"], r
            assert "could not store its rows" in r["error"], r
            assert c.execute("SELECT count(*) FROM tenant_a.wh_types WHERE t >= %s", (DAY2,)).fetchone()[0] == 0
    finally:
        with cp.source_super("tenant_a") as s:
            s.execute("DELETE FROM public.wh_types WHERE id = 6")


STALL = r"""
CREATE OR REPLACE FUNCTION public.wh_stall_at(i int, at int, secs int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    until timestamptz;
BEGIN
    IF i = at THEN
        until := clock_timestamp() + make_interval(secs => secs);
        WHILE clock_timestamp() < until LOOP
            BEGIN
                PERFORM pg_sleep(0.2);
            EXCEPTION WHEN query_canceled THEN
                NULL;  -- ignores its statement_timeout and every cancel
            END;
        END LOOP;
    END IF;
    RETURN i;
END $$;
GRANT EXECUTE ON FUNCTION public.wh_stall_at(int, int, int) TO PUBLIC;
"""

# 60,000 rows a day, streamed as they are made; the source stalls at row `at` for `secs`.
STREAM_Q = ("SELECT g AS id, ('{TARGET_DATE}'::date + make_interval(secs => g %% 86000))::timestamptz AS logged_time, "
            "repeat('x', 100) AS name FROM generate_series(1, 60000) g WHERE public.wh_stall_at(g, %d, %d) > 0")
STREAM_COLS = "id bigint, logged_time timestamptz, name text"


@pytest.fixture
def streaming(cp):
    for t in harness.TENANTS:
        with cp.source_super(t) as s:
            s.execute(STALL)
    made = []

    def make(name, at=0, secs=0):
        with cp.wh_admin() as c:
            c.execute("SELECT _wh.set_template(%s, %s, %s, 'logged_time', unique_key => 'id')",
                      (name, STREAM_Q % (at, secs), STREAM_COLS))
        made.append(name)

    yield make
    with cp.wh_admin() as c:
        for name in made:
            c.execute("SELECT _wh.drop_template(%s)", (name,))
        harness.register_tenants(cp, c)
    for t in harness.TENANTS:
        with cp.source_super(t) as s:
            s.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%%wh_stall_at%%' "
                      "AND pid <> pg_backend_pid()")


def test_a_source_that_stops_mid_stream_fails_at_its_deadline(cp, streaming):
    streaming("stall", at=30000, secs=30)
    user, password = cp.tenant_login("tenant_a")
    with cp.wh_admin() as c:
        c.execute("SELECT _wh.set_tenant_connection('tenant_a', remote_timeout => '2 seconds')")
        start = time.monotonic()
        r = c.execute("SELECT _wh.refresh_mv('stall', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        took = time.monotonic() - start
        assert r["status"] == "failed" and r["sqlstate"] == "57014", r
        assert "no answer within 4.0 s" in r["error"] and "gave up and disconnected" in r["error"], r
        assert took < 10, took
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'stall' AND checksum IS NOT NULL").fetchone()[0] == 0


def test_caps_are_counted_as_rows_arrive(cp, streaming):
    streaming("capped")
    with cp.wh_admin() as c:
        c.execute("SELECT _wh.set_template_limits('capped', max_rows_per_day => 50000)")
        r = c.execute("SELECT _wh.refresh_mv('capped', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        assert r["status"] == "failed" and r["sqlstate"] == "54000", r
        assert f"day {DAY}: more than 50000 rows (max_rows_per_day)" in r["error"] and "nothing was changed" in r["error"], r
        c.execute("SELECT _wh.set_template_limits('capped', max_rows_per_day => 100000, max_bytes_per_day => 1000000)")
        r = c.execute("SELECT _wh.refresh_mv('capped', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        assert r["status"] == "failed" and "more than 1000000 bytes (max_bytes_per_day)" in r["error"], r
        c.execute("SELECT _wh.set_template_limits('capped', max_bytes_per_day => 100000000, max_row_bytes => 100)")
        r = c.execute("SELECT _wh.refresh_mv('capped', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        assert r["status"] == "failed" and "(max_row_bytes)" in r["error"], r
        c.execute("SELECT _wh.set_template_limits('capped', max_row_bytes => 1000)")
        r = c.execute("SELECT _wh.refresh_mv('capped', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["rows"] == 60000, r


def _in_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out["error"] = e
        out["at"] = time.monotonic()

    th = threading.Thread(target=run)
    th.start()
    return th, out


def _wait_streaming(env, tenant="tenant_a"):
    """Until the source is sending wh's COPY (its backend active on it)."""
    with env.source_super(tenant) as s:
        for _ in range(200):
            n = s.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wh' AND state = 'active' "
                          "AND query LIKE 'COPY (SELECT wh_g.wh_day%%'").fetchone()[0]
            if n:
                return
            time.sleep(0.05)
    raise AssertionError("the COPY never started")


def test_cancel_and_statement_timeout_end_the_call_mid_stream(cp, streaming):
    streaming("slow", at=20000, secs=60)
    with cp.wh_admin() as c, cp.wh_admin() as killer:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        th, out = _in_thread(lambda: c.execute("SELECT _wh.refresh_mv('slow', 'tenant_a', %s)", (DAY,)).fetchone())
        _wait_streaming(cp)
        time.sleep(0.5)
        sent = time.monotonic()
        killer.execute("SELECT pg_cancel_backend(%s)", (pid,))
        th.join(10)
        assert isinstance(out.get("error"), psycopg.errors.QueryCanceled), out
        assert out["at"] - sent < 1.0, out["at"] - sent
        c.execute("SET statement_timeout = '1500ms'")
        start = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT _wh.refresh_mv('slow', 'tenant_a', %s)", (DAY,))
        assert time.monotonic() - start < 2.5
        c.execute("RESET statement_timeout")
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'slow' AND checksum IS NOT NULL").fetchone()[0] == 0
    # The abandoned COPY ends on the source once it next writes to the closed socket.


def test_a_source_killed_mid_stream_fails_that_tenant_and_changes_nothing(cp, streaming):
    streaming("killed", at=20000, secs=60)
    with cp.wh_admin() as c:
        th, out = _in_thread(lambda: c.execute("SELECT _wh.refresh_mv('killed', 'tenant_a', %s)", (DAY,)).fetchone()[0])
        _wait_streaming(cp)
        with cp.source_super("tenant_a") as s:
            s.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'wh' "
                      "AND query LIKE 'COPY (SELECT wh_g.wh_day%%'")
        th.join(20)
        r = out.get("value")
        assert r and r["status"] == "failed" and r["sqlstate"].startswith(("08", "57P")), out
        assert "tenant_a" in r["error"], r
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'killed' AND checksum IS NOT NULL").fetchone()[0] == 0
        # The session goes on.
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_a_thousand_calls_give_back_every_descriptor(cp, streaming):
    """1,000 refreshes (unchanged), 100 over a cap, 20 cancelled mid-stream, 20 refused at
    connect: the backend's open files and memory end where they were."""
    streaming("fds", at=5000, secs=30)
    with cp.wh_admin() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]

        def unchanged(n):
            for _ in range(n):
                r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
                assert r["details"]["action"] == "unchanged", r

        def over_cap(n):
            c.execute("SELECT _wh.set_template_limits('wh_types', max_rows_per_day => 2)")
            for _ in range(n):
                r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
                assert r["sqlstate"] == "54000", r
            c.execute("SELECT _wh.set_template_limits('wh_types', max_rows_per_day => 10000000)")

        def cancelled(n):
            c.execute("SET statement_timeout = '300ms'")
            for _ in range(n):
                with pytest.raises(psycopg.errors.QueryCanceled):
                    c.execute("SELECT _wh.refresh_mv('fds', 'tenant_a', %s)", (DAY,))
            c.execute("RESET statement_timeout")

        def refused(n):
            c.execute("SELECT _wh.set_tenant_connection('tenant_a', port => 1, test_first => false)")
            for _ in range(n):
                r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
                assert r["status"] == "failed" and r["sqlstate"] == "08001", r
            harness.register_tenants(cp, c, tenants=["tenant_a"])

        c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,))
        # Each path once first: the relation files PostgreSQL keeps open are not wh's.
        for path in (unchanged, over_cap, cancelled, refused):
            path(1)
        fds, rss = harness.backend_descriptors(pid), harness.backend_rss_kb(pid)
        unchanged(1000)
        over_cap(100)
        cancelled(20)
        refused(20)
        assert harness.backend_descriptors(pid) == fds, (fds, harness.backend_descriptors(pid))
        assert harness.backend_rss_kb(pid) - rss < 16 * 1024, (rss, harness.backend_rss_kb(pid))
    # Every connection wh opened is closed: on the source, only the cancelled COPYs' own
    # backends remain (they ignore cancels, and end when they next write).
    with cp.source_super("tenant_a") as s:
        left = s.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wh' "
                         "AND query NOT LIKE '%%wh_stall_at%%'").fetchone()[0]
    assert left == 0


def fan_out_peak(cp, c, template):
    """Run update_all_tenants of `template` on `c`; its result and the most of wh's
    connections running the streaming query seen at once on the source (sampled)."""
    r, peak = harness.peak_while(
        lambda: cp.source_super("tenant_a"),
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wh' AND query LIKE '%wh_stall_at(g, 1, 1)%'",
        lambda: c.execute("SELECT _wh.update_all_tenants(%s, %s)", (template, DAY)).fetchone()[0])
    assert r["failed"] == 0 and r["succeeded"] == 3 * len(r["days"]), r
    return r, peak


def test_the_fan_out_holds_at_most_max_source_connections(cp, streaming):
    """Three tenants whose sources each take a second, wh.max_source_connections = 2: at
    most two of wh's connections are ever open on the sources, and every tenant is built."""
    streaming("fan", at=1, secs=1)
    with cp.wh_admin() as c:
        c.execute("SET wh.max_source_connections = 2")
        _, peak = fan_out_peak(cp, c, "fan")
        assert peak == 2, peak


def test_the_fan_out_holds_at_most_max_connections_per_host_to_one_server(cp, streaming):
    """The three tenants share one source server (127.0.0.1 and the source's port): with
    wh.max_connections_per_host = 1 the fan-out holds one connection there at a time,
    whatever wh.max_source_connections allows, and with 2 two; every tenant is built."""
    streaming("fanh", at=1, secs=1)
    for per_host in (1, 2):
        with cp.wh_admin() as c:
            c.execute("SET wh.max_source_connections = 16")
            c.execute(f"SET wh.max_connections_per_host = {per_host}")
            _, peak = fan_out_peak(cp, c, "fanh")
            assert peak == per_host, (per_host, peak)


def test_no_secret_in_any_message_and_no_option_wh_does_not_pass(cp):
    """A wrong password (a canary) fails the tenant's day with 08001 and appears in no
    result, run-log row, server log or pg_stat_activity; a server option that would make
    the warehouse read one of its own files (sslkey, passfile, service) is refused with
    42501 naming it, before any connection."""
    canary = "COPY-CANARY-" + os.urandom(4).hex()
    logs = [Path(cp.run_dir) / "warehouse.log", Path(cp.source.data).parent / "source.log"]
    sizes = [p.stat().st_size for p in logs]
    with cp.wh_admin() as c:
        try:
            c.execute("SELECT _wh.set_tenant_connection('tenant_a', password => %s, test_first => false)", (canary,))
            r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
            assert r["status"] == "failed" and r["sqlstate"] == "08001", r
            assert "password authentication failed" in r["error"] and canary not in str(r), r
            logged = c.execute("SELECT string_agg(coalesce(error, '') || details::text, ' ') FROM _wh.run_log").fetchone()[0]
            assert canary not in logged
            for option in ("sslkey '/etc/ssl/private/ssl-cert-snakeoil.key'", "passfile '/var/lib/postgresql/.pgpass'", "service 'x'"):
                c.execute(f"ALTER SERVER wh_tenant_a OPTIONS (ADD {option})")
                try:
                    r = c.execute("SELECT _wh.refresh_mv('wh_types', 'tenant_a', %s)", (DAY,)).fetchone()[0]
                    key = option.split()[0]
                    assert r["status"] == "failed" and r["sqlstate"] == "42501", r
                    assert f'permission denied to set connection option "{key}"' in r["error"], r
                finally:
                    c.execute(f"ALTER SERVER wh_tenant_a OPTIONS (DROP {option.split()[0]})")
        finally:
            harness.register_tenants(cp, c, tenants=["tenant_a"])
        with cp.source_super("tenant_a") as s:
            assert s.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s", (f"%{canary}%",)).fetchone()[0] == 0
    for p, size in zip(logs, sizes):
        assert canary not in p.read_bytes()[size:].decode(errors="replace"), p


# ------------------------------------------------------------------ a source that lies about its answer

def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


class LyingSource(FakeServer):
    """A source that takes the password (cleartext, over TLS), says it is ready, and then
    answers wh's queries as `mode` says: `copy_in` (a COPY IN where rows were asked for),
    `packed` (two rows in one CopyData message) or `other_day` (a row of a day not asked
    for)."""

    def __init__(self, workdir, mode):
        self.mode = mode
        super().__init__(workdir)

    def handle(self, conn):
        conn.settimeout(10)
        conn = self.startup(conn)
        conn.sendall(_msg(b"R", struct.pack("!I", 3)))  # cleartext password
        _recv(conn, 1)
        _recv(conn, struct.unpack("!I", _recv(conn, 4))[0] - 4)
        conn.sendall(_msg(b"R", struct.pack("!I", 0)) + _msg(b"S", b"server_version\x0015.0\x00")
                     + _msg(b"Z", b"I"))
        while True:
            kind = _recv(conn, 1)
            body = _recv(conn, struct.unpack("!I", _recv(conn, 4))[0] - 4)
            if kind == b"X":
                return
            sql = body.rstrip(b"\0").decode()
            if self.mode == "copy_in":
                conn.sendall(_msg(b"G", struct.pack("!bh", 0, 0)))
                continue
            if sql.startswith("SELECT * FROM"):  # the describe: four text columns, no row
                fields = b"".join(name + b"\0" + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0)
                                  for name in (b"wh_day", b"id", b"logged_time", b"name"))
                conn.sendall(_msg(b"T", struct.pack("!h", 4) + fields) + _msg(b"C", b"SELECT 0\0") + _msg(b"Z", b"I"))
                continue
            day = re.search(r"'(\d{4}-\d\d-\d\d)'::date AS wh_day", sql)[1]
            if self.mode == "other_day":
                day = (dt.date.fromisoformat(day) + dt.timedelta(days=5)).isoformat()
            row = f"{day}\t1\t{day} 01:00:00+00\tx\n".encode()
            data = row + row if self.mode == "packed" else row
            conn.sendall(_msg(b"H", struct.pack("!bh", 0, 4) + struct.pack("!hhhh", 0, 0, 0, 0)) + _msg(b"d", data)
                         + _msg(b"c", b"") + _msg(b"C", b"COPY 2\0") + _msg(b"Z", b"I"))


@pytest.mark.parametrize("mode,said", [("copy_in", "a COPY where rows were asked for"),
                                       ("packed", "not one text row"),
                                       ("other_day", "a day that was not asked for")])
def test_a_source_that_lies_about_its_answer_is_refused(cp, tmp_path, mode, said):
    os.chmod(tmp_path, 0o755)
    fake = LyingSource(tmp_path, mode)
    try:
        with cp.wh_admin() as c:
            c.execute("SELECT _wh.set_template('liar', %s, 'id bigint, logged_time timestamptz, name text', 'logged_time')",
                      ("SELECT 1::bigint AS id, '{TARGET_DATE}'::timestamptz AS logged_time, 'x' AS name",))
            c.execute("SELECT _wh.set_tenant_connection('liar', '127.0.0.1', %s, 'liar', 'liar', 'pw', "
                      "channel_binding => 'disable', remote_timeout => '5 seconds', test_first => false)", (fake.port,))
            try:
                start = time.monotonic()
                r = c.execute("SELECT _wh.refresh_mv('liar', 'liar', %s)", (DAY,)).fetchone()[0]
                assert r["status"] == "failed" and r["sqlstate"] == "08P01" and said in r["error"], r
                assert time.monotonic() - start < 5
                assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'liar' AND checksum IS NOT NULL").fetchone()[0] == 0
            finally:
                c.execute("SELECT _wh.remove_tenant('liar', drop_data => true)")
                c.execute("SELECT _wh.drop_template('liar')")
    finally:
        fake.close()
