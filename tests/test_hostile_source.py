"""Sources that hang, lie about who they are, flood, or try to reach the warehouse's log
(security issue, items 2, 4, 5 and 6)."""

import datetime as dt
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

import harness

T = "hostile"
DAY = dt.date(2025, 5, 20)  # a fixed past day
ROWS = 30

TEMPLATE_Q = ("SELECT f.id, f.logged_time, f.name FROM phood_foodlogsum f "
              "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
COLS = "id bigint, logged_time timestamptz, name text"


@pytest.fixture(scope="module")
def hs(env):
    harness.seed(env, DAY.isoformat(), 2, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        c.execute("SELECT _wh.set_template(%s, %s, %s, 'logged_time', unique_key => 'id')", (T, TEMPLATE_Q, COLS))
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, DAY, DAY + dt.timedelta(days=1)))
    return env


def log_text(env) -> str:
    return (Path(env.run_dir) / "warehouse.log").read_text(errors="replace")


def figures(c, tenant, day):
    return c.execute(f"SELECT count(*), coalesce(sum(id), 0) FROM {tenant}.{T} WHERE logged_time >= %s AND logged_time < %s",
                     (day, day + dt.timedelta(days=1))).fetchone()


# ------------------------------------------------------------------ item 2: hung sources

STUBBORN = """
CREATE OR REPLACE FUNCTION public.stubborn() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    until timestamptz := clock_timestamp() + interval '25 seconds';
BEGIN
    IF current_database() <> 'tenant_c' THEN
        RETURN 0;
    END IF;
    WHILE clock_timestamp() < until LOOP
        BEGIN
            PERFORM pg_sleep(1);
        EXCEPTION WHEN query_canceled THEN
            NULL;  -- ignores its statement_timeout and every cancel
        END;
    END LOOP;
    RETURN 0;
END $$;
GRANT EXECUTE ON FUNCTION public.stubborn() TO PUBLIC;
"""


def test_a_source_that_ignores_cancels_is_cut_off_by_whs_own_deadline(hs):
    for t in harness.TENANTS:
        with hs.source_super(t) as s:
            s.execute(STUBBORN)
    hang_q = ("SELECT f.id, f.logged_time, f.name FROM phood_foodlogsum f, (SELECT public.stubborn() AS s) s "
              "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    user, password = hs.tenant_login("tenant_c")
    with hs.wh_admin() as c:  # as a cron job has it: no statement_timeout of its own
        c.execute("SELECT _wh.set_template('hang', %s, %s, 'logged_time')", (hang_q, COLS))
        c.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s, remote_timeout => '2 seconds')",
                  (hs.source.port, user, password))
        try:
            # Fan-out: the other tenants' rows are taken as they come; tenant_c fails on its deadline.
            r = c.execute("SELECT _wh.update_all_tenants('hang', %s)", (DAY,)).fetchone()[0]
            st = {(x["tenant"], x["day"]): x for x in r["results"]}
            for day in r["days"]:
                assert st[("tenant_a", day)]["status"] == st[("tenant_b", day)]["status"] == "succeeded", r
                bad = st[("tenant_c", day)]
                assert bad["status"] == "failed" and bad["sqlstate"] == "57014", bad
                assert "no answer within 4.0 s" in bad["error"] and "gave up and disconnected" in bad["error"], bad
            order = [t for (t,) in c.execute(
                "SELECT tenant_name FROM _wh.run_log WHERE template_name = 'hang' AND operation = 'update_all_tenants' ORDER BY run_id")]
            assert order[-2:] == ["tenant_c", "tenant_c"], order
            # wh did not wait for it: the source is still busy with the abandoned query.
            with hs.source_super("tenant_c") as s:
                assert s.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'tenant_c' AND state = 'active' "
                                 "AND query LIKE '%stubborn%'").fetchone()[0] >= 1
            # One day, a window, a backfill: each bounded the same way, the failure is the tenant's.
            one = c.execute("SELECT _wh.create_mv_from_template('hang', 'tenant_c', target_date => %s)", (DAY,)).fetchone()[0]
            assert one["status"] == "failed" and one["sqlstate"] == "57014", one
            w = c.execute("SELECT _wh.update_mv_window('hang', 'tenant_c', %s, %s)", (DAY, DAY)).fetchone()[0]
            assert w["failed"] == 1 and "no answer within" in w["results"][0]["error"], w
            c.execute("CALL _wh.backfill('hang', 'tenant_c', %s, %s)", (DAY, DAY))
            assert c.execute("SELECT count(*) FROM _wh.run_log WHERE template_name = 'hang' AND tenant_name = 'tenant_c' "
                             "AND operation = 'backfill' AND sqlstate = '57014'").fetchone()[0] == 1
            # A local cancel still ends the call at once (here: the caller's statement_timeout).
            c.execute("SET statement_timeout = '1s'")
            with pytest.raises(psycopg.errors.QueryCanceled):
                c.execute("SELECT _wh.update_mv_window('hang', 'tenant_c', %s, %s)", (DAY, DAY + dt.timedelta(days=1)))
            c.execute("RESET statement_timeout")
        finally:
            c.execute("RESET statement_timeout")
            c.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s, remote_timeout => '30 min')",
                      (hs.source.port, user, password))
            with hs.source_super("tenant_c") as s:
                s.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'tenant_c' AND query LIKE '%stubborn%' "
                          "AND pid <> pg_backend_pid()")


# ------------------------------------------------------------------ item 4: impostors

def _recv(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


class FakeServer:
    """A PostgreSQL impostor: TLS with a self-signed certificate, then asks for the
    password in cleartext and records what it gets."""

    def __init__(self, workdir: Path):
        cert, key = workdir / "fake.crt", workdir / "fake.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=impostor",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.passwords: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            try:
                self.handle(conn)
            except (OSError, ConnectionError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def startup(self, conn):
        """TLS when asked, no GSS, up to the startup message; the connection to go on with."""
        while True:
            n = struct.unpack("!I", _recv(conn, 4))[0]
            body = _recv(conn, n - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code == 80877103:  # SSLRequest
                conn.sendall(b"S")
                conn = self.ctx.wrap_socket(conn, server_side=True)
                continue
            if code == 80877104:  # GSSENCRequest
                conn.sendall(b"N")
                continue
            return conn  # the startup message

    def handle(self, conn):
        conn.settimeout(5)
        conn = self.startup(conn)
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        kind = _recv(conn, 1)
        if kind == b"p":
            n = struct.unpack("!I", _recv(conn, 4))[0]
            self.passwords.append(_recv(conn, n - 4).rstrip(b"\0"))
        msg = b"SFATAL\0C28P01\0Mimpostor\0\0"
        conn.sendall(b"E" + struct.pack("!I", len(msg) + 4) + msg)

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


def test_the_default_connection_refuses_an_impostor_and_gives_it_no_password(hs, tmp_path):
    os.chmod(tmp_path, 0o755)
    fake = FakeServer(tmp_path)
    secret = "IMPOSTOR-CANARY-" + os.urandom(4).hex()
    try:
        with hs.wh_admin() as c:
            c.execute("SELECT _wh.set_tenant_connection('impostor', '127.0.0.1', %s, 'tenant_a', 'tenant_a_ro', %s, "
                      "test_first => false)", (fake.port, secret))
            t = c.execute("SELECT _wh.test_tenant_connection('impostor')").fetchone()[0]
            assert t["status"] == "failed" and "channel binding required" in t["error"], t
            assert fake.passwords == []
            # The real source (SCRAM) works with the same default.
            assert c.execute("SELECT _wh.test_tenant_connection('tenant_a')").fetchone()[0]["status"] == "succeeded"
            # Relaxed explicitly for one tenant, the impostor gets the password: the test can fail.
            c.execute("SELECT _wh.set_tenant_connection('impostor', '127.0.0.1', %s, 'tenant_a', 'tenant_a_ro', %s, "
                      "channel_binding => 'disable', test_first => false)", (fake.port, secret))
            assert c.execute("SELECT _wh.test_tenant_connection('impostor')").fetchone()[0]["status"] == "failed"
            assert fake.passwords == [secret.encode()]
            audit = c.execute("SELECT changed_fields FROM _wh.connection_audit WHERE tenant_name = 'impostor' ORDER BY audit_id DESC LIMIT 1").fetchone()[0]
            assert "channel_binding" in audit
            c.execute("SELECT _wh.remove_tenant('impostor')")
    finally:
        fake.close()


# ------------------------------------------------------------------ item 5: floods

def test_limits_refuse_a_flooding_source_and_change_nothing(hs):
    day = DAY
    with hs.wh_admin() as c:
        before = figures(c, "tenant_b", day)
        # A value far over max_row_bytes (8 MiB by default): refused on the source, before it is sent.
        with hs.source_super("tenant_b") as s:
            s.execute("UPDATE phood_foodlogsum SET name = repeat('x', 20 * 1024 * 1024) WHERE id = "
                      "(SELECT min(id) FROM phood_foodlogsum WHERE logged_time >= %s::date AND logged_time < %s::date + 1)", (day, day))
        try:
            r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (T, day, day)).fetchone()[0]
            x = r["results"][0]
            assert x["status"] == "failed" and x["sqlstate"] == "54000", x
            assert "max_row_bytes" in x["error"] and "nothing was changed" in x["error"], x
            assert figures(c, "tenant_b", day) == before
        finally:
            harness.seed(hs, DAY.isoformat(), 2, ROWS, tenants=["tenant_b"])
        # Rows per day.
        c.execute("SELECT _wh.set_template_limits(%s, max_rows_per_day => 10)", (T,))
        try:
            lim = c.execute("SELECT max_rows_per_day, max_bytes_per_day, max_row_bytes FROM _wh.mv_templates WHERE template_name = %s", (T,)).fetchone()
            assert lim == (10, 268435456, 8388608)  # only the limit named changed
            r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (T, day, day + dt.timedelta(days=1))).fetchone()[0]
            assert r["failed"] == 2 and all("max_rows_per_day" in x["error"] for x in r["results"]), r
            assert figures(c, "tenant_b", day) == before
            # Bytes per answer: a two-day chunk over one day's cap is fetched again a day at a time.
            c.execute("SELECT _wh.set_template_limits(%s, max_rows_per_day => 1000, max_bytes_per_day => 3000)", (T,))
            r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (T, day, day + dt.timedelta(days=1))).fetchone()[0]
            assert r["succeeded"] == 2, r
            c.execute("SELECT _wh.set_template_limits(%s, max_bytes_per_day => 100)", (T,))
            r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (T, day, day)).fetchone()[0]
            assert r["failed"] == 1 and "max_bytes_per_day" in r["results"][0]["error"], r
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                c.execute("SELECT _wh.set_template_limits(%s, max_row_bytes => 0)", (T,))
        finally:
            c.execute("SELECT _wh.set_template_limits(%s, 10000000, 268435456, 8388608)", (T,))


NOISY = r"""
CREATE OR REPLACE FUNCTION public.noisy() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..20000 LOOP
        RAISE NOTICE E'noise %\nLOG:  FORGED-LINE-%', i, i;
    END LOOP;
    RAISE WARNING E'last\nFATAL:  FORGED-WARNING';
    RETURN 0;
END $$;
GRANT EXECUTE ON FUNCTION public.noisy() TO PUBLIC;
-- The same, overriding the client_min_messages wh asks for.
CREATE OR REPLACE FUNCTION public.noisy_loud() RETURNS int LANGUAGE plpgsql SET client_min_messages = notice AS $$
BEGIN
    RETURN public.noisy();
END $$;
GRANT EXECUTE ON FUNCTION public.noisy_loud() TO PUBLIC;
"""


def test_remote_messages_never_reach_the_warehouse_log(hs):
    with hs.source_super("tenant_a") as s:
        s.execute(NOISY)
    size = len(log_text(hs))
    with hs.wh_admin() as c:
        for fn in ("noisy", "noisy_loud"):
            q = (f"SELECT f.id, f.logged_time, f.name FROM phood_foodlogsum f, (SELECT public.{fn}() AS n) n "
                 "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
            c.execute("SELECT _wh.set_template(%s, %s, %s, 'logged_time')", (fn, q, COLS))
            r = c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_a', target_date => %s)", (fn, DAY)).fetchone()[0]
            assert r["status"] == "succeeded", r
    added = log_text(hs)[size:]
    assert "FORGED" not in added and "noise" not in added
    assert len(added) < 20000


# ------------------------------------------------------------------ item 6: secrets in the log

def test_a_failing_user_mapping_change_never_logs_the_password(hs):
    secret = "MAPPING-CANARY-" + os.urandom(4).hex()
    user, password = hs.tenant_login("tenant_c")
    size = len(log_text(hs))
    server = "wh_tenant_c"
    holder = hs.wh_super(autocommit=False)
    try:
        # A concurrent change holds the mapping: our change waits, then fails on lock_timeout...
        holder.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER {server} OPTIONS (SET user 'tenant_c_ro')")
        with hs.wh_admin() as c:
            c.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable, match="could not store the login"):
                c.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s)",
                          (hs.source.port, user, secret))
        # ...or is cancelled while it waits.
        victim = hs.wh_admin()
        pid = victim.info.backend_pid
        def cancel_once_waiting():
            # Cancel when the call is seen waiting on the mapping's lock, not after a guess.
            with hs.wh_super() as s:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if s.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
                        break
                    time.sleep(0.02)
                s.execute("SELECT pg_cancel_backend(%s)", (pid,))

        t = threading.Thread(target=cancel_once_waiting)
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            victim.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s)",
                           (hs.source.port, user, secret))
        t.join()
        victim.close()
    finally:
        holder.rollback()
        holder.close()
    added = log_text(hs)[size:]
    assert "could not store the login" in added  # the failures were logged...
    assert secret not in added                   # ...without the password
    with hs.wh_admin() as c:
        c.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s)", (hs.source.port, user, password))
        assert c.execute("SELECT _wh.test_tenant_connection('tenant_c')").fetchone()[0]["status"] == "succeeded"


def test_a_local_failure_is_not_called_the_sources_and_failures_carry_their_duration(hs):
    """A value that overflows the template's declared column fails in the warehouse, not at
    the source: the message says so, and the failed day carries its real duration."""
    q = ("SELECT f.id, f.logged_time, f.weight FROM phood_foodlogsum f "
         "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    with hs.wh_admin() as c:
        c.execute("SELECT _wh.set_template('narrow', %s, 'id bigint, logged_time timestamptz, weight numeric(4,1)', 'logged_time')", (q,))
        r = c.execute("SELECT _wh.create_mv_from_template('narrow', 'tenant_a', target_date => %s)", (DAY,)).fetchone()[0]
        assert r["status"] == "failed" and r["sqlstate"] == "22003", r
        assert "the source answered, but the warehouse could not store its rows" in r["error"], r
        assert r["ms"] > 0, r
        logged = c.execute("SELECT duration_ms, error FROM _wh.run_log WHERE template_name = 'narrow' AND status = 'failed' "
                           "ORDER BY run_id DESC LIMIT 1").fetchone()
        assert logged[0] > 0 and "could not store" in logged[1]
        assert "CheckedName" not in logged[1]


# ------------------------------------------------------------------ issue 20, item 9: huge error texts

SHOUTER = """
CREATE OR REPLACE FUNCTION public.shout() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF current_database() = 'tenant_b' THEN
        RAISE EXCEPTION '%', repeat('x', 10 * 1024 * 1024)
            USING DETAIL = repeat('d', 1024 * 1024), HINT = repeat('h', 1024 * 1024);
    END IF;
    RETURN 0;
END $$;
GRANT EXECUTE ON FUNCTION public.shout() TO PUBLIC;
"""


def test_a_source_error_of_ten_megabytes_is_cut_to_a_few_kilobytes_everywhere(hs):
    """A 10 MB RAISE EXCEPTION (with a 1 MB detail and hint) over a 10-day window: each
    day's run log row, the call's answer and the server log carry at most a few kB of it."""
    with hs.source_super("tenant_b") as s:
        s.execute(SHOUTER)
    shout_q = ("SELECT f.id, f.logged_time, f.name FROM phood_foodlogsum f, (SELECT public.shout() AS s) s "
               "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    log_before = len(log_text(hs))
    with hs.wh_admin() as c:
        c.execute("SELECT _wh.set_template('shout', %s, %s, 'logged_time')", (shout_q, COLS))
        size_before = c.execute("SELECT pg_total_relation_size('_wh.run_log')").fetchone()[0]
        first = c.execute("SELECT coalesce(max(run_id), 0) FROM _wh.run_log").fetchone()[0]
        r = c.execute("SELECT _wh.update_mv_window('shout', 'tenant_b', %s, %s, max_days => 10)",
                      (DAY, DAY + dt.timedelta(days=9))).fetchone()[0]
        # The source has rows on the first two days (shout() runs only where there are rows).
        assert r["status"] == "partial" and r["failed"] == 2, r
        assert len(str(r)) < 64 * 1024, len(str(r))
        errors = [e for (e,) in c.execute("SELECT error FROM _wh.run_log WHERE run_id > %s AND error IS NOT NULL", (first,))]
        assert len(errors) >= 2 and max(len(e) for e in errors) <= 2048 + 64, max(len(e) for e in errors)
        assert all(e.endswith("more bytes cut)") for e in errors if len(e) > 2048), errors[0][-80:]
        grown = c.execute("SELECT pg_total_relation_size('_wh.run_log')").fetchone()[0] - size_before
        assert grown < 1024 * 1024, grown
    added = log_text(hs)[log_before:]
    assert max((len(line) for line in added.splitlines()), default=0) < 16 * 1024
    assert len(added) < 1024 * 1024, len(added)


# ------------------------------------------------------------------ issue 20, item 8: numerics past the byte cap

def peak_kb(pid: int) -> int:
    """The backend's peak resident memory (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_numerics_of_131072_digits_count_as_the_bytes_they_send(hs):
    """A source sending '1e131071'::numeric (a few bytes stored, 131,072 digits sent) in five
    columns, 600 rows a day, under max_bytes_per_day = 1 MiB: the answer fails on the
    source at the cap (54000), and the warehouse backend's peak memory stays near where it
    was (0.5.0 counted stored sizes and took it from 37 MB to 824 MB)."""
    big = ("SELECT f.id, f.logged_time, '1e131071'::numeric AS a, '1e131071'::numeric AS b, '1e131071'::numeric AS c, "
           "'1e131071'::numeric AS d, '1e131071'::numeric AS e FROM phood_foodlogsum f CROSS JOIN generate_series(1, 20) g "
           "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    # id declared numeric over the source's int8: the answer travels as COPY text, where
    # each value is its 131,072 digits (in binary COPY it would be a few bytes, as stored).
    cols = "id numeric, logged_time timestamptz, a numeric, b numeric, c numeric, d numeric, e numeric"
    with hs.wh_admin() as c:
        c.execute("SELECT _wh.set_template('bignum', %s, %s, 'logged_time')", (big, cols))
        c.execute("SELECT _wh.set_template_limits('bignum', max_bytes_per_day => 1048576)")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        before = peak_kb(pid)
        r = c.execute("SELECT _wh.refresh_mv('bignum', 'tenant_a', %s)", (DAY,)).fetchone()[0]
        after = peak_kb(pid)
        assert r["status"] == "failed" and r["sqlstate"] == "54000", r
        assert "max_bytes_per_day" in r["error"], r
        assert after - before < 64 * 1024, (before, after)
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'bignum'").fetchone()[0] == 0


# ------------------------------------------------------------------ issue 20, item 10: one slow tenant, everyone's rows

NAPPER = """
CREATE OR REPLACE FUNCTION public.nap_c() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF current_database() = 'tenant_c' THEN
        PERFORM pg_sleep(10);
    END IF;
    RETURN 0;
END $$;
GRANT EXECUTE ON FUNCTION public.nap_c() TO PUBLIC;
"""


def test_a_slow_tenant_holds_no_other_tenants_rows_in_a_committing_fan_out(hs):
    """0.5.0: with one source slow, the other tenants' fetched rows stayed uncommitted and
    their days busy until it answered (or its deadline). CALL _wh.refresh_all_tenants (and
    the wh:<template>:all job) commits each tenant as its answer is stored: while tenant_c's
    source still sleeps, tenant_a's and tenant_b's days are committed and free."""
    import threading
    for t in harness.TENANTS:
        with hs.source_super(t) as s:
            s.execute(NAPPER)
    slow_q = ("SELECT f.id, f.logged_time, f.name FROM phood_foodlogsum f, (SELECT public.nap_c() AS s) s "
              "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    target = DAY + dt.timedelta(days=1)
    with hs.wh_admin() as c:
        c.execute("SELECT _wh.set_template('slowc', %s, %s, 'logged_time', lookback_days => 1)", (slow_q, COLS))
        first = c.execute("SELECT coalesce(max(run_id), 0) FROM _wh.run_log").fetchone()[0]
    out = {}

    def run():
        with hs.wh_admin() as c:
            out["r"] = c.execute("CALL _wh.refresh_all_tenants('slowc', %s)", (target,)).fetchone()[0]

    worker = threading.Thread(target=run)
    worker.start()
    try:
        seen = set()
        with hs.wh_admin() as c:
            for _ in range(300):
                seen = {t for (t,) in c.execute(
                    "SELECT DISTINCT tenant_name FROM _wh.run_log WHERE run_id > %s AND template_name = 'slowc' "
                    "AND status = 'succeeded'", (first,))}
                if {"tenant_a", "tenant_b"} <= seen:
                    break
                time.sleep(0.1)
            # Committed while tenant_c's source is still asleep: the call is still running.
            assert {"tenant_a", "tenant_b"} <= seen and "tenant_c" not in seen and worker.is_alive(), seen
            assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'slowc' AND tenant_name IN ('tenant_a', 'tenant_b')"
                             ).fetchone()[0] == 4
            # Their days are free: another session refreshes one now, instead of skipping as busy.
            r = c.execute("SELECT _wh.refresh_mv('slowc', 'tenant_a', %s)", (target,)).fetchone()[0]
            assert r["status"] == "succeeded", r
    finally:
        worker.join(120)
    r = out["r"]
    assert r["status"] == "succeeded" and r["tenants"] == 3, r
    with hs.wh_admin() as c:
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'slowc'").fetchone()[0] == 6
