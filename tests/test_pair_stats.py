"""Each tenant x template pair's kept figures (_wh.pair_stats, read by _wh.storage, _wh.gaps
and _wh.health()) always equal the registry's, whoever wrote it and however sessions
interleave: a pair changed since it was settled is listed in _wh.pair_changes (a statement
trigger on _wh.slices) and computed from the registry until a settle folds it in; a settle
never waits (another session settling, it leaves its pairs listed), and never loses a change
another session has not committed yet.

Fixed past days (2023), so nothing depends on the calendar."""

import datetime as dt

import psycopg
import pytest

import harness

FIRST = dt.date(2023, 3, 1)
DAYS = 12
ROWS = 10
T = "pairs"
# Every pair's figures computed from the registry now (what _wh._pairs must equal).
FROM_REGISTRY = ("SELECT f.* FROM (SELECT array_agg(template_name) t, array_agg(tenant_name) n FROM "
                 "(SELECT DISTINCT template_name, tenant_name FROM _wh.slices) d) a, _wh._pair_figures(a.t, a.n) f")
COLUMNS = "template_name, tenant_name, slices, rows, oldest_day, newest_day, newest_end, missing_days, last_refreshed_at"


def day(i):
    return FIRST + dt.timedelta(days=i)


@pytest.fixture(scope="module")
def pairs(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        c.execute("SELECT _wh._settle_pairs()")
    return env


def now_vs_registry(c):
    """(_wh._pairs, the registry's own figures), both sorted."""
    shown = c.execute(f"SELECT {COLUMNS} FROM _wh._pairs ORDER BY 1, 2").fetchall()
    truth = c.execute(f"SELECT {COLUMNS} FROM ({FROM_REGISTRY}) x ORDER BY 1, 2").fetchall()
    return shown, truth


def refreshed(c, tenant):
    return c.execute("SELECT max(refreshed_at) FROM _wh.slices WHERE template_name = %s AND tenant_name = %s",
                     (T, tenant)).fetchone()[0]


def kept(c, tenant):
    return c.execute(f"SELECT {COLUMNS} FROM _wh.pair_stats WHERE template_name = %s AND tenant_name = %s",
                     (T, tenant)).fetchone()


def listed(c, tenant):
    return c.execute("SELECT count(*) FROM _wh.pair_changes WHERE template_name = %s AND tenant_name = %s",
                     (T, tenant)).fetchone()[0]


def test_figures_follow_every_write_and_settle(pairs):
    with pairs.wh_admin() as c:
        for i in (0, 1, 2, 6, 7, 10):
            c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_a', target_date => %s)", (T, day(i)))
        # Written by hand (no procedure settled it): listed, and computed from the registry.
        assert listed(c, "tenant_a") > 0
        shown, truth = now_vs_registry(c)
        assert shown == truth
        mine = [r for r in shown if r[:2] == (T, "tenant_a")]
        assert mine == [(T, "tenant_a", 6, 6 * ROWS, day(0), day(10), day(11), 3 + 2, refreshed(c, "tenant_a"))]
        gaps = c.execute("SELECT first_missing, last_missing, days FROM _wh.gaps WHERE template_name = %s "
                         "AND tenant_name = 'tenant_a' ORDER BY 1", (T,)).fetchall()
        assert gaps == [(day(3), day(5), 3), (day(8), day(9), 2)]
        assert c.execute("SELECT _wh._settle_pairs()").fetchone()[0] >= 1
        assert listed(c, "tenant_a") == 0
        assert kept(c, "tenant_a") == mine[0]
        # Now read from the kept row: the same figures, gaps and storage.
        assert now_vs_registry(c)[0] == now_vs_registry(c)[1]
        assert c.execute("SELECT first_missing, last_missing, days FROM _wh.gaps WHERE template_name = %s "
                         "AND tenant_name = 'tenant_a' ORDER BY 1", (T,)).fetchall() == gaps
        assert c.execute("SELECT days, rows, oldest_day, newest_day FROM _wh.storage WHERE template_name = %s "
                         "AND tenant_name = 'tenant_a'", (T,)).fetchone() == (6, 6 * ROWS, day(0), day(10))
        # A backfill (a procedure) fills the gaps and settles as it commits.
        c.execute("CALL _wh.backfill(%s, 'tenant_a', %s, %s)", (T, day(0), day(10)))
        assert listed(c, "tenant_a") == 0
        assert kept(c, "tenant_a") == (T, "tenant_a", 11, 11 * ROWS, day(0), day(10), day(11), 0, refreshed(c, "tenant_a"))
        assert c.execute("SELECT count(*) FROM _wh.gaps WHERE template_name = %s AND tenant_name = 'tenant_a'",
                         (T,)).fetchone()[0] == 0
        h = c.execute("SELECT _wh.health()").fetchone()[0]
        total = c.execute("SELECT count(*), sum(row_count) FROM _wh.slices").fetchone()
        assert (h["slices"], h["registry_rows"]) == (total[0], total[1])


def test_a_change_not_committed_while_another_session_settles_is_kept(pairs):
    """Session A refreshes tenant_b's days in an open transaction; session B settles and
    commits meanwhile; once A commits, tenant_b's figures are A's (still listed), and the
    next settle keeps them."""
    with pairs.wh_admin() as c:
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s)", (T, day(0), day(3)))
        c.execute("SELECT _wh._settle_pairs()")
        before = kept(c, "tenant_b")
        assert before[2] == 4
    a = pairs.wh_admin(autocommit=False)
    try:
        a.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s)", (T, day(4), day(8)))
        with pairs.wh_admin() as b:
            b.execute("SELECT _wh._settle_pairs()")
            # A's days are not committed: B sees the kept figures, and keeps them.
            assert kept(b, "tenant_b") == before
            assert [r for r in now_vs_registry(b)[0] if r[:2] == (T, "tenant_b")] == [before]
        a.commit()
    finally:
        a.close()
    with pairs.wh_admin() as c:
        assert listed(c, "tenant_b") > 0
        shown, truth = now_vs_registry(c)
        assert shown == truth
        assert [r[2] for r in shown if r[:2] == (T, "tenant_b")] == [9]
        c.execute("SELECT _wh._settle_pairs()")
        assert kept(c, "tenant_b")[2] == 9 and listed(c, "tenant_b") == 0


def test_a_settle_held_elsewhere_is_given_up(pairs):
    """While one session holds the settle (its transaction left open), another gives up at
    once (never waits: writers settle last in their transactions) with nothing settled and
    nothing lost: its pairs still listed and still shown right, the caller's lock_timeout as
    it was; and at REPEATABLE READ after a settle committed since its snapshot, the same."""
    with pairs.wh_admin() as c:
        c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_c', target_date => %s)", (T, day(0)))
    a = pairs.wh_admin(autocommit=False)
    try:
        a.execute("SELECT _wh._settle_pairs()")
        with pairs.wh_admin() as b:
            b.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_c', target_date => %s)", (T, day(1)))
            b.execute("SET lock_timeout = '5s'")
            assert b.execute("SELECT _wh._settle_pairs()").fetchone()[0] == 0
            assert b.execute("SHOW lock_timeout").fetchone()[0] == "5s"
            assert listed(b, "tenant_c") > 0
            shown, truth = now_vs_registry(b)
            assert shown == truth and [r[2] for r in shown if r[:2] == (T, "tenant_c")] == [2]
        a.commit()
    finally:
        a.close()
    rr = pairs.wh_admin(autocommit=False)
    try:
        rr.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rr.execute("SELECT count(*) FROM _wh.slices")  # the snapshot is taken here
        with pairs.wh_admin() as c:
            c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_c', target_date => %s)", (T, day(2)))
            assert c.execute("SELECT _wh._settle_pairs()").fetchone()[0] >= 1
        assert rr.execute("SELECT _wh._settle_pairs()").fetchone()[0] == 0
        rr.commit()
    finally:
        rr.close()
    with pairs.wh_admin() as c:
        c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_c', target_date => %s)", (T, day(3)))
        assert c.execute("SELECT _wh._settle_pairs()").fetchone()[0] >= 1
        assert kept(c, "tenant_c")[2] == 4 and listed(c, "tenant_c") == 0


def test_rename_and_remove_move_the_figures(pairs):
    with pairs.wh_admin() as c:
        user, password = pairs.tenant_login("tenant_c")
        c.execute("SELECT _wh.set_tenant_connection('pairs_x', '127.0.0.1', %s, 'tenant_c', %s, %s)",
                  (pairs.source.port, user, password))
        c.execute("SELECT _wh.update_mv_window(%s, 'pairs_x', %s, %s)", (T, day(0), day(4)))
        c.execute("SELECT _wh._settle_pairs()")
        c.execute("SELECT _wh.rename_tenant('pairs_x', 'pairs_y')")
        shown, truth = now_vs_registry(c)
        assert shown == truth
        assert [r[1:4] for r in shown if r[0] == T and r[1].startswith("pairs_")] == [("pairs_y", 5, 5 * (ROWS + 14))]
        c.execute("SELECT _wh._settle_pairs()")
        assert kept(c, "pairs_x") is None and kept(c, "pairs_y")[2] == 5
        c.execute("SELECT _wh.remove_tenant('pairs_y', drop_data => true)")
        shown, truth = now_vs_registry(c)
        assert shown == truth and not [r for r in shown if r[1].startswith("pairs_")]
        c.execute("SELECT _wh._settle_pairs()")
        assert kept(c, "pairs_y") is None


def test_maintenance_computes_every_pair_again(pairs):
    """Kept figures a superuser damaged (or a restore left out) are right again after the
    nightly maintenance job's run."""
    with pairs.wh_super() as s:
        s.execute("DELETE FROM _wh.pair_stats WHERE template_name = %s AND tenant_name = 'tenant_a'", (T,))
        s.execute("UPDATE _wh.pair_stats SET rows = rows + 1 WHERE template_name = %s AND tenant_name = 'tenant_b'", (T,))
    with pairs.wh_admin() as c:
        shown, truth = now_vs_registry(c)
        assert shown != truth
        r = c.execute("SELECT _wh.run_maintenance()").fetchone()[0]
        assert r["details"]["pairs_settled"] >= 3
        shown, truth = now_vs_registry(c)
        assert shown == truth
        assert c.execute("SELECT count(*) FROM _wh.pair_changes").fetchone()[0] == 0


def test_operators_read_but_readers_do_not(pairs):
    with pairs.wh_reader() as r:
        for relation in ("_wh.pair_stats", "_wh.pair_changes", "_wh._pairs"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(f"SELECT * FROM {relation}")


def test_storage_shares_bytes_out_without_overflow(pairs):
    """A template's bytes shared out by rows: bytes x a tenant's rows passes bigint at a large
    warehouse (here a registered day of 10^15 rows), and the view still answers."""
    with pairs.wh_super() as s, s.transaction():
        s.execute("INSERT INTO _wh.slices (template_name, tenant_name, schema_name, slice_name, kind, range_start, "
                  "range_end, row_count) VALUES (%s, 'pairs_big', 'pairs_big', 'pairs_big_d', 'day', %s, %s, 1000000000000000)",
                  (T, day(0), day(1)))
        big = s.execute("SELECT est_bytes, rows FROM _wh.storage WHERE template_name = %s AND tenant_name = 'pairs_big'",
                        (T,)).fetchone()
        total = s.execute("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                          "WHERE inhparent = %s::regclass", (f"_wh_data.{T}",)).fetchone()[0]
        assert big[1] == 10 ** 15 and 0 < big[0] <= total, (big, total)
        raise psycopg.Rollback()
