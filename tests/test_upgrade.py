"""Upgrading a 0.1.0 warehouse: build release 0.1.0 from this repository's history
(commit acc60a3), fill a warehouse with it (day partitions and a folded year), install
this build, `ALTER EXTENSION wh UPDATE`, `CALL _wh.migrate_storage()`, and compare every
tenant-day. The upgraded catalog (0.1.0 -> 0.2.0 -> 0.3.0 -> 0.4.0 -> 0.5.0 -> 0.6.0 -> 0.7.0 -> 0.8.0 -> 0.9.0 -> 0.10.0, every upgrade script in turn) must equal a
fresh install's. The update runs with an operator planted in public for every operator and
type pair the scripts use (issue 20): none runs, and no wh object is bound to one.

The 0.1.0 build is packaged into target/ (never installed in place); its files and this
build's are swapped in with atomic renames, so running backends keep the library they
mapped."""

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

import harness

OLD_COMMIT = "acc60a3"
OLD_VERSION = "0.1.0"
NEW_VERSION = "0.15.0"
CHAIN = ["wh--0.1.0--0.2.0.sql", "wh--0.2.0--0.3.0.sql", "wh--0.3.0--0.4.0.sql", "wh--0.4.0--0.5.0.sql", "wh--0.5.0--0.6.0.sql",
         "wh--0.6.0--0.7.0.sql", "wh--0.7.0--0.8.0.sql", "wh--0.8.0--0.9.0.sql",
         "wh--0.9.0--0.10.0.sql", "wh--0.10.0--0.11.0.sql", "wh--0.11.0--0.12.0.sql", "wh--0.12.0--0.13.0.sql", "wh--0.13.0--0.14.0.sql", "wh--0.14.0--0.15.0.sql"]
# Fixed past days across a new year, whatever the date today.
LAST_YEAR = 2024
FIRST = dt.date(LAST_YEAR, 12, 20)
LAST = dt.date(LAST_YEAR + 1, 1, 6)
ROWS = 25
T = "upg"


def pg_dirs():
    out = lambda flag: subprocess.run(["/usr/bin/pg_config", flag], capture_output=True, text=True, check=True).stdout.strip()
    return Path(out("--sharedir")) / "extension", Path(out("--pkglibdir"))


def swap_in(src: Path, dst: Path):
    """Copy src over dst atomically (a rename), so backends that mapped dst keep it."""
    tmp = dst.with_name(dst.name + ".wh-swap")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def package_old(commit: str = OLD_COMMIT, version: str = OLD_VERSION) -> Path:
    """Build an earlier release from git history into target/ and return its package root."""
    git_dir = os.environ.get("WH_GIT_DIR", str(harness.ROOT / ".git"))
    src = Path(tempfile.mkdtemp(prefix=f"wh-{version}-src."))
    out = harness.TARGET / f"wh-{version}-package"
    archive = subprocess.run(["git", "--git-dir", git_dir, "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    env = {**os.environ, "CARGO_TARGET_DIR": str(harness.TARGET / f"wh-{version}")}
    env["PATH"] = f"{Path.home() / '.cargo/bin'}:{env.get('PATH', '')}"
    log = harness.TARGET / f"wh-{version}-package.log"
    with open(log, "w") as f:
        rc = subprocess.run(
            ["cargo", "pgrx", "package", "--debug", "--pg-config", "/usr/bin/pg_config", "--out-dir", str(out)],
            cwd=src, env=env, stdout=f, stderr=subprocess.STDOUT,
        ).returncode
    shutil.rmtree(src, ignore_errors=True)
    assert rc == 0, log.read_text()[-3000:]
    return out


def figures(conn, relation, where=""):
    return {
        (t, d): (n, ck)
        for t, d, n, ck in conn.execute(
            f"SELECT schema_name, (logged_time AT TIME ZONE 'UTC')::date, count(*), sum(hashint8(id)::numeric + weight) "
            f"FROM {relation} {where} GROUP BY 1, 2"
        ).fetchall()
    }


def generated(conn):
    """The seeds' per-template functions (update_<template>, create_<template>_mv) that
    setting a template makes: they depend on the templates, not on the install path."""
    return {f for (t,) in conn.execute("SELECT template_name FROM _wh.mv_templates") for f in (f"update_{t}", f"create_{t}_mv")}


def catalog(conn):
    """What the extension defines: routines, views, tables' columns and constraints, members
    (the per-template functions aside, checked on their own)."""
    made = generated(conn)
    routines = [r for r in conn.execute(
        "SELECT p.oid::regprocedure::text, p.prokind, pg_get_function_result(p.oid), pg_get_function_arguments(p.oid), "
        "CASE WHEN p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') THEN p.prosrc ELSE md5(p.prosrc) END, "
        "p.provolatile, (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.proacl) a), p.prosecdef, "
        "coalesce(p.proconfig, '{}')::text, p.proname::text "
        "FROM pg_proc p WHERE p.pronamespace IN ('_wh'::regnamespace, '_wh_scope'::regnamespace) ORDER BY 1"
    ).fetchall() if r[-1] not in made]
    views = conn.execute(
        "SELECT c.relname, md5(pg_get_viewdef(c.oid)) FROM pg_class c WHERE c.relnamespace = '_wh'::regnamespace "
        "AND c.relkind = 'v' ORDER BY 1"
    ).fetchall()
    columns = conn.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE c.relnamespace = '_wh'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2"
    ).fetchall()
    members = conn.execute(
        "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wh' WHERE d.deptype = 'e' "
        "AND NOT (d.classid = 'pg_proc'::regclass AND (SELECT proname::text FROM pg_proc WHERE oid = d.objid) = ANY (%s))", (list(made),)
    ).fetchone()[0]
    schemas = conn.execute("SELECT nspname, nspowner::regrole::text, nspacl::text FROM pg_namespace WHERE nspname LIKE '\\_wh%' ORDER BY 1").fetchall()
    constraints = conn.execute(
        "SELECT c.relname, con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
        "JOIN pg_class c ON c.oid = con.conrelid WHERE c.relnamespace = '_wh'::regnamespace ORDER BY 1, 2"
    ).fetchall()
    # Triggers, indexes and grants of wh's own relations, and what pg_dump dumps with the
    # configuration: an upgrade that forgot one of them would pass every other comparison.
    triggers = conn.execute(
        "SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal "
        "AND c.relnamespace IN ('_wh'::regnamespace, '_wh_scope'::regnamespace) ORDER BY 1, 2"
    ).fetchall()
    indexes = conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relnamespace IN ('_wh'::regnamespace, '_wh_scope'::regnamespace) ORDER BY 1"
    ).fetchall()
    grants = conn.execute(
        "SELECT c.relnamespace::regnamespace::text, c.relname, c.relkind, "
        "(SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a) FROM pg_class c "
        "WHERE c.relnamespace IN ('_wh'::regnamespace, '_wh_scope'::regnamespace) AND c.relkind IN ('r', 'v', 'S') ORDER BY 1, 2"
    ).fetchall()
    dumped = conn.execute(
        "SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM pg_extension e, unnest(e.extconfig) c "
        "WHERE e.extname = 'wh'"
    ).fetchone()[0]
    return {"routines": routines, "views": views, "columns": columns, "members": members, "schemas": schemas,
            "constraints": constraints, "triggers": triggers, "indexes": indexes, "grants": grants, "dumped": dumped}


def this_build_back(keep: Path, names):
    share, lib = pg_dirs()
    for n in names:
        swap_in(keep / n, share / n)
    swap_in(keep / "wh.so", lib / "wh.so")


def update_with_planted_operators(env, db: str):
    """An operator plants in public what would match the scripts' comparisons exactly;
    then the superuser's ALTER EXTENSION wh UPDATE: nothing planted runs, nothing is bound
    to a planted operator."""
    with env.warehouse.connect(db) as s:
        s.execute("CREATE TABLE public.pwned (tag text, who name, super boolean, at timestamptz DEFAULT clock_timestamp())")
        s.execute("GRANT ALL ON public.pwned TO PUBLIC")
    with psycopg.connect(env.warehouse.tcp_dsn(db, "whadmin", env.admin_password), autocommit=True) as c:
        assert harness.plant_operators(c) > 200
    with env.warehouse.connect(db) as s:
        s.execute("ALTER EXTENSION wh UPDATE")
        assert s.execute("SELECT extversion FROM pg_extension WHERE extname = 'wh'").fetchone()[0] == NEW_VERSION
        assert harness.foreign_dependencies(s) == []
        assert s.execute("SELECT count(*) FROM public.pwned WHERE super").fetchone()[0] == 0


@pytest.fixture(scope="module")
def new_files():
    """This build's installed files, kept aside to be put back."""
    share, lib = pg_dirs()
    keep = Path(tempfile.mkdtemp(prefix="wh-new-build."))
    names = ["wh.control", f"wh--{NEW_VERSION}.sql", *CHAIN]
    for n in names:
        shutil.copy2(share / n, keep / n)
    shutil.copy2(lib / "wh.so", keep / "wh.so")
    yield keep, names
    for n in names:
        swap_in(keep / n, share / n)
    swap_in(keep / "wh.so", lib / "wh.so")
    shutil.rmtree(keep, ignore_errors=True)


def test_upgrade_from_0_1_0_and_migrate_storage(env, new_files):
    keep, names = new_files
    share, lib = pg_dirs()
    old = package_old()
    old_share = next(old.rglob(f"wh--{OLD_VERSION}.sql")).parent
    old_lib = next(old.rglob("wh.so"))
    harness.seed(env, FIRST.isoformat(), (LAST - FIRST).days + 1, ROWS)
    with harness.scratch_database(env, "wh_upgrade", extension=False), harness.scratch_database(env, "wh_fresh", extension=False):
        try:
            # 1. Release 0.1.0, filled the 0.1.0 way: day partitions, and a folded year for tenant_a.
            swap_in(old_share / "wh.control", share / "wh.control")
            swap_in(old_share / f"wh--{OLD_VERSION}.sql", share / f"wh--{OLD_VERSION}.sql")
            swap_in(old_lib, lib / "wh.so")
            with env.warehouse.connect("wh_upgrade") as s:
                s.execute(f"CREATE EXTENSION wh VERSION '{OLD_VERSION}' CASCADE")
                s.execute("GRANT CREATE ON SCHEMA public TO wh_admin")
            with psycopg.connect(env.warehouse.tcp_dsn("wh_upgrade", "whadmin", env.admin_password), autocommit=True) as c:
                harness.register_tenants(env, c, settings=False)
                harness.register_template(c, T)
                for t in harness.TENANTS:
                    r = c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, LAST)).fetchone()[0]
                    assert r["status"] == "succeeded", r
                r = c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_a', %s)", (T, LAST_YEAR)).fetchone()[0]
                assert r["status"] == "succeeded", r
                assert c.execute("SELECT count(*) FROM _wh.slices WHERE kind = 'year'").fetchone()[0] == 1
                before = figures(c, f"public.{T}")
                days_before = c.execute("SELECT count(*) FROM _wh.slices WHERE kind = 'day'").fetchone()[0]
            assert len(before) == 3 * ((LAST - FIRST).days + 1)
        finally:
            # 2. This build, then the update (with operators planted) and the migration.
            this_build_back(keep, names)
        update_with_planted_operators(env, "wh_upgrade")
        with psycopg.connect(env.warehouse.tcp_dsn("wh_upgrade", "whadmin", env.admin_password), autocommit=True) as c:
            notices = []
            c.add_notice_handler(lambda n: notices.append(n.message_primary))
            c.execute("CALL _wh.migrate_storage()")
            assert sum(" verified" in n for n in notices) == 3, notices
            assert "3 tenant table(s) moved" in notices[-1]
            # Every tenant-day is where it was, with the same rows, in the new layout.
            assert figures(c, f"public.{T}") == before
            for t in harness.TENANTS:
                mine = {k: v for k, v in before.items() if k[0] == t}
                n = c.execute(f"SELECT count(*) FROM {t}.{T}").fetchone()[0]
                assert n == sum(v[0] for v in mine.values())
                assert c.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (f"{t}.{T}",)).fetchone()[0] == "v"
            reg = c.execute(
                "SELECT count(*), count(*) FILTER (WHERE kind = 'day' AND checksum IS NOT NULL), sum(row_count) FROM _wh.slices"
            ).fetchone()
            assert reg[0] == reg[1] == len(before) and reg[2] == sum(v[0] for v in before.values())
            assert days_before < len(before)  # the folded year's days are tenant-days again
            assert c.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'upg\\_%%\\_v010'").fetchone()[0] == 0
            assert {s for s, _ in harness.partitions(c, T)} == {"_wh_data"}
            # The upgraded warehouse works: a refresh that changes nothing writes nothing.
            r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, LAST)).fetchone()[0]
            assert r["status"] == "succeeded" and r["details"]["action"] == "unchanged", r
            # A rerun has nothing left to do.
            notices.clear()
            c.execute("CALL _wh.migrate_storage()")
            assert "0 tenant table(s) moved" in notices[-1]
            upgraded = catalog(c)
            # The seeds' per-template functions exist for the templates set before the upgrade.
            assert c.execute(
                "SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e' "
                "WHERE p.pronamespace = '_wh'::regnamespace AND p.proname = ANY (%s)", (sorted(generated(c)),)
            ).fetchone()[0] == len(generated(c)) > 0
        with env.warehouse.connect("wh_upgrade") as s:
            s.execute("SET search_path = pg_catalog, pg_temp")
            assert s.execute("SELECT count(*) FROM public.pwned WHERE super").fetchone()[0] == 0
        with env.warehouse.connect("wh_fresh") as s:
            s.execute("CREATE EXTENSION wh CASCADE")
            fresh = catalog(s)
        for part in fresh:
            assert upgraded[part] == fresh[part], part


# Release 0.5.0 (the last commit before 0.6.0's work): tenant readers were a policy per tenant.
V050_COMMIT = "19adba2"


def test_upgrade_from_0_5_0_moves_tenant_readers_to_one_policy(env, new_files):
    """A 0.5.0 warehouse with a tenant-scoped reader, upgraded with operators planted in
    public: its per-tenant policy becomes the table's "wh:scoped" and a row of
    _wh_scope.readers; the reader reads exactly its tenant's rows, and a revocation while it
    holds the table succeeds."""
    keep, names = new_files
    share, lib = pg_dirs()
    old = package_old(V050_COMMIT, "0.5.0")
    old_share = next(old.rglob("wh--0.5.0.sql")).parent
    old_lib = next(old.rglob("wh.so"))
    day = FIRST
    harness.seed(env, day.isoformat(), 1, ROWS)
    with env.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS upg_ro")
        s.execute("CREATE ROLE upg_ro LOGIN PASSWORD 'upg-ro-pw'")
        s.execute("DROP ROLE IF EXISTS upg_bi")
        s.execute("CREATE ROLE upg_bi NOLOGIN")
    try:
        with harness.scratch_database(env, "wh_upg5", extension=False):
            try:
                swap_in(old_share / "wh.control", share / "wh.control")
                swap_in(old_share / "wh--0.5.0.sql", share / "wh--0.5.0.sql")
                swap_in(old_lib, lib / "wh.so")
                with env.warehouse.connect("wh_upg5") as s:
                    s.execute("CREATE EXTENSION wh VERSION '0.5.0' CASCADE")
                with psycopg.connect(env.warehouse.tcp_dsn("wh_upg5", "whadmin", env.admin_password), autocommit=True) as c:
                    harness.register_tenants(env, c, settings=False)
                    harness.register_template(c, T)
                    for t in harness.TENANTS:
                        assert c.execute("SELECT _wh.refresh_mv(%s, %s, %s)", (T, t, day)).fetchone()[0]["status"] == "succeeded"
                    # A folded year: 0.14.0's update records it (a rebuild folds it again).
                    r = c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, %s)", (T, LAST_YEAR)).fetchone()[0]
                    assert r["status"] == "succeeded", r
                    c.execute("SELECT _wh.grant_tenant_reader('upg_ro', 'tenant_a')")
                    c.execute(f"GRANT SELECT ON public.{T} TO upg_bi")  # a DBA's own grant
                    assert c.execute("SELECT count(*) FROM pg_policy WHERE polname = 'wh:tenant_a'").fetchone()[0] == 1
                    mine = c.execute(f"SELECT count(*) FROM public.{T} WHERE schema_name = 'tenant_a'").fetchone()[0]
            finally:
                this_build_back(keep, names)
            update_with_planted_operators(env, "wh_upg5")
            with env.warehouse.connect("wh_upg5") as s:
                s.execute("SET search_path = pg_catalog, pg_temp")  # public holds the plants
                pols = s.execute("SELECT array_agg(polname::text ORDER BY polname) FROM pg_policy WHERE polrelid = %s::regclass",
                                 (f"_wh_data.{T}",)).fetchone()[0]
                assert pols == ["wh:all", "wh:scoped"], pols
                assert s.execute("SELECT template_name, year, storage FROM _wh.folded_years").fetchall() == [(T, LAST_YEAR, "heap")]
                # 0.8.0: the table moved into _wh_data; public.<template> is the readers' view,
                # with the DBA's grant and wh_reader's, never the scoped reader's.
                assert s.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (f"public.{T}",)).fetchone()[0] == "v"
                assert s.execute("SELECT has_table_privilege('upg_bi', %s, 'SELECT'), has_table_privilege('wh_reader', %s, 'SELECT'), "
                                 "has_table_privilege('upg_ro', %s, 'SELECT')", (f"public.{T}",) * 3).fetchone() == (True, True, False)
                assert s.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (f"_wh_data.{T}",)).fetchone()[0] >= 1
                # The tenant views read their two branches; none of the readers' relations is
                # a member of the extension (DROP EXTENSION leaves them readable).
                assert f'"{T}:all"' in s.execute("SELECT pg_get_viewdef(%s::regclass)", (f"tenant_a.{T}",)).fetchone()[0]
                assert s.execute("SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wh' "
                                 "WHERE d.deptype = 'e' AND d.objid = ANY (%s::regclass[])",
                                 ([f"public.{T}", f'_wh_data."{T}:all"', f"tenant_a.{T}", f"_wh_data.{T}"],)).fetchone()[0] == 0
                assert s.execute("SELECT tenant_name FROM _wh_scope.readers r JOIN pg_roles o ON o.oid = r.role_oid "
                                 "WHERE o.rolname = 'upg_ro'").fetchall() == [("tenant_a",)]
            reader = psycopg.connect(env.warehouse.tcp_dsn("wh_upg5", "upg_ro", "upg-ro-pw"))
            try:
                # From 0.8.0 a scoped reader reads its tenant view; public.<template> is all-tenant readers'.
                assert reader.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == mine
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(f"SELECT count(*) FROM public.{T}")
                reader.rollback()
                with psycopg.connect(env.warehouse.tcp_dsn("wh_upg5", "phood_ro", env.reader_password)) as r:
                    r.execute("SET search_path = pg_catalog, pg_temp")
                    assert r.execute(f"SELECT count(*) FROM public.{T} WHERE schema_name = 'tenant_a'").fetchone()[0] == mine
                    assert r.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == mine
                with psycopg.connect(env.warehouse.tcp_dsn("wh_upg5", "whadmin", env.admin_password), autocommit=True) as c:
                    assert c.execute("SELECT _wh.revoke_tenant_reader('upg_ro', 'tenant_a')").fetchone()[0]["status"] == "succeeded"
                reader.rollback()
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(f"SELECT count(*) FROM tenant_a.{T}")
            finally:
                reader.close()
    finally:
        with env.warehouse.connect() as s:
            s.execute("DROP ROLE IF EXISTS upg_ro")
            s.execute("DROP ROLE IF EXISTS upg_bi")
