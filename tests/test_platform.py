"""wh past one database: what DROP EXTENSION leaves, and a streaming hot standby serving the
BI logins. Fixed past days."""

import datetime as dt
import time
from pathlib import Path

import psycopg
import pytest

import harness

FIRST = dt.date(2024, 5, 1)
DAYS = 6
ROWS = 15
T = "plat"


@pytest.fixture(scope="module")
def plat(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    return env


def figures(conn, relation):
    return conn.execute(f"SELECT count(*), sum(hashint8(id)::numeric), sum(weight) FROM {relation}").fetchone()


def test_drop_extension_leaves_the_data_readable(plat):
    with harness.scratch_database(plat, "wh_dropped") as db:
        admin = psycopg.connect(plat.warehouse.tcp_dsn(db, "whadmin", plat.admin_password), autocommit=True)
        reader = lambda: psycopg.connect(plat.warehouse.tcp_dsn(db, "phood_ro", plat.reader_password), autocommit=True)
        with admin as c:
            harness.register_tenants(plat, c, tenants=("tenant_a", "tenant_b"))
            harness.register_template(c, T)
            for t in ("tenant_a", "tenant_b"):
                c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, FIRST + dt.timedelta(days=DAYS - 1)))
        with reader() as r:
            before = {rel: figures(r, rel) for rel in (f"public.{T}", f"tenant_a.{T}", f"tenant_b.{T}")}
        assert before[f"public.{T}"][0] == DAYS * (2 * ROWS + 7)
        with plat.warehouse.connect(db) as s:
            # Plain DROP EXTENSION: no CASCADE needed, and nothing of the data goes with it.
            s.execute("DROP EXTENSION wh")
            assert s.execute("SELECT count(*) FROM pg_namespace WHERE nspname = '_wh'").fetchone()[0] in (0, 1)
            assert s.execute("SELECT to_regclass('_wh.tenant_connections')").fetchone()[0] is None
            assert s.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (f"_wh_data.{T}",)).fetchone()[0] >= 1
        with reader() as r:
            assert {rel: figures(r, rel) for rel in before} == before
        # Installed again, wh takes the table back: its registry is new, so days are built
        # again (fetched), the same rows as before.
        with plat.warehouse.connect(db) as s:
            s.execute("CREATE EXTENSION wh CASCADE")
        with psycopg.connect(plat.warehouse.tcp_dsn(db, "whadmin", plat.admin_password), autocommit=True) as c:
            harness.register_tenants(plat, c, tenants=("tenant_a", "tenant_b"))
            harness.register_template(c, T)
            for t in ("tenant_a", "tenant_b"):
                r = c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, FIRST + dt.timedelta(days=DAYS - 1))).fetchone()[0]
                assert r["status"] == "succeeded", r
        with reader() as r:
            assert {rel: figures(r, rel) for rel in before} == before


def lsn_replayed(standby, lsn, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            return True
        time.sleep(0.1)
    return False


def test_a_hot_standby_serves_readers_and_refuses_wh(plat):
    w = plat.warehouse
    with plat.wh_admin() as c:
        harness.register_tenants(plat, c)
        harness.register_template(c, T)
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, FIRST + dt.timedelta(days=DAYS - 2)))
    data = Path(plat.run_dir) / "standby"
    port = w.port + 2
    # Tablespaces other modules made (same machine): the standby's copies go elsewhere.
    with plat.wh_super() as s:
        spaces = [loc for (loc,) in s.execute(
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")]
    mapping = [f"--tablespace-mapping={loc}={plat.run_dir}/standby_ts{i}" for i, loc in enumerate(spaces)]
    made = harness.as_postgres([str(harness.PG_BIN / "pg_basebackup"), "-h", w.sock, "-p", str(w.port), "-U", "postgres",
                                "-D", str(data), "-R", "-X", "stream", "--no-sync", *mapping], check=False)
    assert made.returncode == 0, made.stderr
    harness.as_postgres(["tee", "-a", str(data / "postgresql.auto.conf")], input=f"port = {port}\n")
    standby = harness.Cluster(name="standby", port=port, data=str(data), sock=w.sock)
    standby.start()
    try:
        ro = lambda: psycopg.connect(standby.tcp_dsn(plat.warehouse_db, "phood_ro", plat.reader_password), autocommit=True)
        with plat.wh_reader() as pr, ro() as sr:
            assert sr.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            rels = [f"public.{T}"] + [f"{t}.{T}" for t in harness.TENANTS]
            assert lsn_replayed(sr, pr.execute("SELECT pg_current_wal_lsn()").fetchone()[0])
            assert {rel: figures(sr, rel) for rel in rels} == {rel: figures(pr, rel) for rel in rels}
            # A refresh on the primary (a new day) reaches the standby once replayed.
            with plat.wh_admin() as c:
                r = c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_b', target_date => %s)",
                              (T, FIRST + dt.timedelta(days=DAYS - 1))).fetchone()[0]
                assert r["status"] == "succeeded" and r["rows"] == ROWS + 7, r
                lsn = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            assert lsn_replayed(sr, lsn)
            assert figures(sr, f"tenant_b.{T}") == figures(pr, f"tenant_b.{T}")
            assert figures(sr, f"tenant_b.{T}")[0] == DAYS * (ROWS + 7)
        # wh's writing calls fail there with a clear error, as an operator.
        with psycopg.connect(standby.tcp_dsn(plat.warehouse_db, "whadmin", plat.admin_password), autocommit=True) as sc:
            for call in (f"SELECT _wh.update_mv_window('{T}', 'tenant_a', '{FIRST}', '{FIRST}')",
                         f"SELECT _wh.create_combined_table_by_year('{T}', NULL, 2024)",
                         "SELECT _wh.pause_tenant('tenant_a')"):
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only standby") as e:
                    sc.execute(call)
                assert "primary" in e.value.diag.message_hint
            # Monitoring reads work there.
            assert sc.execute("SELECT _wh.health() ->> 'tenants'").fetchone()[0] == "3"
    finally:
        standby.stop()
        harness.as_postgres(["rm", "-rf", str(data), *[f"{plat.run_dir}/standby_ts{i}" for i in range(len(spaces))]], check=False)
