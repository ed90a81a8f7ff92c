"""BENCHMARKS.md from one run's results (bench/bench.py), with release 0.1.0's figures kept
below for comparison."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ok(flag):
    return "yes" if flag else "**no**"


def rollup(a, s, R):
    r = s["rollup"]
    a("### A daily per-store rollup of the same rows\n")
    a("`_wh.set_rollup('…_daily', base, 'store, logged_time::date AS day, count(*) AS n, sum(weight) AS weight, "
      "min(weight) AS lo, max(weight) AS hi', 'store, logged_time::date')` in two layouts, each built by "
      f"`CALL _wh.build_rollup` from the {r['base_rows']:,} stored rows (chunked, committed per tenant-month, checked, "
      f"resumable; a `CREATE TABLE AS` of the same aggregate + one index takes {r['ctas_s']:.1f} s). The dashboard's "
      "30-day `GROUP BY store` on the rollup (`sum(n)`, `sum(weight)`) against the same question on the base; the "
      "constant-range answers are asserted equal. Plan + exec: median of 5 on an idle server; pgbench: 20 clients, "
      f"{R.get('pgbench_seconds', 10)} s each, as the BI role.\n")
    a("| layout | rows | build | query shape | base | rollup | faster by | base tps | rollup tps (errors) | tps ratio |")
    a("|---|---|---|---|---|---|---|---|---|---|")
    for layout, lay in r["layouts"].items():
        for i, (shape, q) in enumerate(lay["queries"].items()):
            head = (f"{layout} | {lay['rows']:,} | {lay['build_s']:.1f} s ({lay['build_s'] / r['ctas_s']:.1f}× the CTAS)"
                    if i == 0 else " | | ")
            b = r["base"][shape]
            a(f"| {head} | {shape} | {b['ms']:.1f} ms | {q['ms']:.1f} ms | **{q['speedup']:.1f}×** | {b['tps']:.1f} | "
              f"{q['tps']:.1f} ({q['errors']}) | **{q['tps_ratio']:.1f}×** |")
    a("\nTarget ≥ 20× faster (compare the columns: one query on an idle server, and throughput under load). "
      "What bounds one all-tenant query on an idle server (seen in EXPLAIN ANALYZE while this benchmark was written, not recorded by it): the rollup "
      "holds 25× fewer rows (40 stores a tenant-day instead of 1,000 rows), but PostgreSQL gives the base's query two "
      "parallel workers and runs the rollup's, too small to be worth workers, in one process; the default layout also "
      "scans two month partitions to find 30 days. Under 20 concurrent dashboards there are no idle cores for workers "
      "and the rollup keeps its advantage (the tps ratios).\n")


def readers(a, label, s):
    a(f"## Readers: every bound type on a `timestamp` column, {label}\n")
    a(f"{s['rows']:,} rows; the template's time column is `timestamp` (the seeds' type) and the bounds are those BI tools "
      "send (cross-type except the last). All-tenant: a wh_reader login on `public.<template>` against one flat table of "
      "the same rows and indexes; then one tenant's rows, by `schema_name = …` on `public.<template>` and through the "
      "tenant's view, against the flat table with the same filter. Scoped: a tenant-scoped login on its "
      "`<tenant>.<template>` (row-level security) against a flat table of only that tenant's rows, same indexes. Plan + "
      "exec: median of 5 `EXPLAIN ANALYZE` after a warm-up; the answers are asserted equal.\n")
    a("| query shape (GROUP BY store, count, sum) | reader | wh plan + exec | planning | flat plan + exec | wh / flat |")
    a("|---|---|---|---|---|---|")
    for who, shapes in ((w, s[w]) for w in ("all", "all, one tenant by its filter", "all, one tenant's view", "scoped") if w in s):
        for shape, q in shapes.items():
            a(f"| {shape} | {who} | {q['wh_plan_ms'] + q['wh_exec_ms']:.1f} ms | {q['wh_plan_ms']:.1f} ms | "
              f"{q['flat_plan_ms'] + q['flat_exec_ms']:.1f} ms | **{q['ratio']:.2f}×** |")
    a("\nTargets: every all-tenant shape ≤ 1.2× flat with planning ≤ 10 ms; a scoped reader's ≤ 1.5× the flat table of its "
      "tenant's rows. Where a ratio misses (the plans are kept in `target/bench-results.json` for every shape over 1.2×):\n\n"
      "* **All tenants, a 7-day `to_timestamp()` or a `date_trunc(current_timestamp …)` bound:** the month partition that lies "
      "wholly inside the range is read by a sequential scan (the right plan by PostgreSQL's costs), whose filter calls "
      "`to_timestamp()` / `date_trunc()` on every row, where the flat table's index scan computes its bounds once; the "
      "planner counts those calls as cheap. Same rows, same statistics, same estimates; a few ms.\n"
      "* **One tenant, all-tenant reader:** a few tenths of a ms (two month partitions' index scans and an Append against "
      "one index scan) on a query of 2–3 ms; through the tenant view, the branch the planner removed still leaves a "
      "subquery scan over the tenant's rows (about 1 ms more). 0.7.0's tenant views made this 15–120× (row-level "
      "security: one row estimated per partition, then the template's time index read across every tenant).\n"
      "* **Tenant-scoped reader:** row-level security, which its isolation needs, lets PostgreSQL use a bound as an index "
      "condition only when its operator is leakproof; the cross-type comparisons are not, so the reader's bounds filter "
      "its tenant's rows of each month partition instead of narrowing the index scan: 2–3× a flat table of its own rows, "
      "7× for a 7-day window (it reads the whole month). Bounds of the column's own type (`timestamp` literals) are "
      "leakproof: 1.9–2.2×, the rest being the policy's lookup of the reader's tenants and the view's two branches. "
      "Absolute: 2–6 ms.\n")


def write(R, path=None):
    L = []
    a = L.append
    version = next(l.split('"')[1] for l in (Path(__file__).resolve().parent.parent / "Cargo.toml").read_text().splitlines()
                   if l.startswith("version = "))
    a(f"# wh benchmarks (storage v2, release {version})\n")
    a(f"Measured {R['measured_at']} by `scripts/bench.sh` (scale {R['scale_factor']}) on {R['machine']}; "
      f"{R['postgres'].split(' on ')[0]}, default settings (max_locks_per_transaction "
      f"{R['settings'].get('max_locks_per_transaction')}, max_connections {R['settings'].get('max_connections')}, "
      f"shared_buffers {R['settings'].get('shared_buffers')} × 8 kB, work_mem {R['settings'].get('work_mem')} kB, jit "
      f"{R['settings'].get('jit')}); warehouse and sources on loopback, sources over SSL with scram; wh built in release mode. "
      "Every ratio compares two figures of this one run. Raw numbers: `target/bench-results.json`.\n")
    for label, s in R.get("readers", {}).items():
        readers(a, label, s)
    for label, s in R.get("scale", {}).items():
        a(f"## Scale: {label}\n")
        a(f"{s['rows']:,} rows in `public.<template>` ({s['partitions']} partitions: a month each) against one flat table of "
          "the same rows with the same four indexes. Plan + exec: median of 5 `EXPLAIN ANALYZE` after a warm-up. pgbench: "
          f"20 clients, {R.get('pgbench_seconds', 10)} s per shape and layout, as the BI role.\n")
        a("| query shape | wh plan + exec | flat plan + exec | wh / flat | planning | relation locks | wh tps (errors) | flat tps | tps wh / flat |")
        a("|---|---|---|---|---|---|---|---|---|")
        for shape, q in s["queries"].items():
            a(f"| {shape} | {q['wh_plan_ms'] + q['wh_exec_ms']:.1f} ms | {q['flat_plan_ms'] + q['flat_exec_ms']:.1f} ms | "
              f"**{q['ratio']:.2f}×** | {q['wh_plan_ms']:.1f} ms | {q['locks']} | {q.get('wh_tps', 0):.1f} ({q.get('wh_errors')}) | "
              f"{q.get('flat_tps', 0):.1f} | {q.get('tps_ratio', 0):.2f} |")
        if "full_year_jit_off" in s:
            j = s["full_year_jit_off"]
            a(f"\nThe full year with `jit = off` for both: wh {j['wh_ms']:.1f} ms, flat {j['flat_ms']:.1f} ms: **{j['ratio']:.2f}×** "
              "(with JIT on, PostgreSQL compiles each partition's scan separately).")
        b = s["bytes"]
        a(f"\nBytes on disk (tables + indexes): wh {b['wh'] / 2**20:,.0f} MiB, flat {b['flat'] / 2**20:,.0f} MiB: **{b['ratio']:.2f}×** "
          "(0.1.0: 2.7× at 200 rows per tenant-day).")
        sc = s["scoped_reader"]
        a(f"Tenant-scoped reader (row-level security), full scan of its tenant: {sc['scoped_ms']:.1f} ms against "
          f"{sc['reader_ms']:.1f} ms for wh_reader with the same filter written out: **{sc['ratio']:.2f}×**.\n")
        if "session" in s:
            m = s["session"]
            a(f"After a dashboard session (every shape above once, as the BI login): the backend's relation cache "
              f"{m['wh']['relcache_kb']:,} kB on wh against {m['flat']['relcache_kb']:,} kB on the flat table (all its memory "
              f"contexts {m['wh']['contexts_kb']:,} kB against {m['flat']['contexts_kb']:,} kB); the database's `pg_class` "
              f"holds {m['pg_class_rows']:,} rows.\n")
        if "rollup" in s:
            rollup(a, s, R)
    if "rollup_upkeep" in R:
        a("## What keeping a rollup adds to a day refresh\n")
        a("The same changed day of one tenant refreshed (`update_mv_window(…, force_recreate => true)`) for a template "
          "without a rollup and for one with the rollup of the issue's example (per store and hour: `count(*)`, "
          "`sum(weight)`, `min`, `max`), kept in the same transaction; alternately, median of 7 each.\n")
        a("| rows in the day | rollup rows | refresh | refresh + its rollup | added |\n|---|---|---|---|---|")
        for v in R["rollup_upkeep"].values():
            a(f"| {v['rows']:,} | {v['groups']:,} | {v['plain_s'] * 1000:.0f} ms | {v['with_rollup_s'] * 1000:.0f} ms | "
              f"**{v['added'] * 100:+.1f}%** |")
        a("\nTarget ≤ 10%. The rollup's day is computed from the rows just written (an index scan of one tenant-day of "
          "`_wh_data.<base>`), checked and compared like any day, and written only if it changed.\n")
    if "stall" in R:
        s = R["stall"]
        a("## A short reader of tenant Y while tenant X is refreshed behind a slow query on X\n")
        a("An 8 s dashboard query on X holds its snapshot; `update_mv_window(X, 3 days, force)` runs meanwhile; a 30-day "
          "query of Y through `public.<template>` loops.\n")
        a("| | ms |\n|---|---|")
        a(f"| Y alone (median of 7) | {s['alone_ms']:.1f} |")
        a(f"| Y during X's refresh (median of {s['samples']}) | {s['during_median_ms']:.1f} |")
        a(f"| Y during X's refresh (worst) | {s['during_max_ms']:.1f} |")
        a(f"| X's refresh itself | {s['refresh_s'] * 1000:.0f} |")
        a(f"\nWorst delay of Y: **{s['during_max_ms'] - s['alone_ms']:.1f} ms** (target ≤ 100 ms; 0.1.0: 7.2 s).\n")
    if "concurrency" in R:
        c = R["concurrency"]
        a("## 20 concurrent refreshes\n")
        a("| | calls | errors | succeeded | skipped (busy) | failed | wall |\n|---|---|---|---|---|---|---|")
        for k, v in c.items():
            if isinstance(v, dict):
                a(f"| {k} | {v['calls']} | {v['errors']} | {v['succeeded']} | {v['skipped']} | {v['failed']} | {v['wall_s']:.2f} s |")
        a(f"\nDeadlocks (pg_stat_database): **{c['deadlocks']}** (0.1.0: every overlap of two days of one tenant).\n")
    if "ingest" in R:
        a("## Ingest one day, and refresh it unchanged\n")
        a("Floors run in the same run: `COPY (<the day's query>) TO STDOUT (FORMAT binary)` on the source (the tenant's "
          "login, over SSL) piped by psql into `COPY t FROM STDIN (FORMAT binary)` of a table that already has wh's four "
          "indexes (**pipe**), the same into a table without indexes followed by the index builds (**bulk**), and 0.5.0's "
          "baseline, a bare dblink `CREATE TABLE AS` + the same indexes (**CTAS**).\n")
        a("| rows | wh `create_mv_from_template` | pipe (binary) | pipe (text) | bulk | CTAS | wh / pipe | wh / bulk | wh / CTAS | "
          "wh into a new month | new month / bulk | "
          "source CPU wh / plain COPY | wh's private memory peak | refresh, source unchanged | unchanged / ingest | its WAL |")
        a("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for k, v in R["ingest"].items():
            cpu = f"{v['source_cpu_s']:.2f} / {v['pipe_source_cpu_s']:.2f} s" if v.get("pipe_source_cpu_s") else "–"
            a(f"| {v['rows']:,} | {v['wh_s']:.2f} s | {v['copy_pipe_s']:.2f} s | {v['copy_pipe_text_s']:.2f} s | "
              f"{v['copy_bulk_s']:.2f} s | {v['ctas_s']:.2f} s | **{v['ratio_pipe']:.2f}×** | {v['ratio_bulk']:.2f}× | "
              f"{v['ratio']:.2f}× | {v['new_month_s']:.2f} s | **{v['new_month_ratio_bulk']:.2f}×** | {cpu} | +{v['peak_kb'] / 1024:.1f} MB | {v['unchanged_refresh_s']:.2f} s | "
              f"**{v['unchanged_ratio']:.2f}×** | {v['unchanged_refresh_wal_bytes']:,} bytes |")
        a("\nTargets (issue 24): ≤ 1.15× the pipe at 100k and 1M rows; an unchanged refresh ≤ 0.5× its ingest; source CPU "
          "≤ 1.1× a plain COPY. Since 0.10.0 the rows arrive by COPY on wh's own libpq connection and stream into the "
          "staging table as they come (binary when the source's types are the declared built-in types; the template's caps "
          "counted on each row as it arrives; the source runs the query alone). What still bounds a day into a month that "
          "exists, profiled on 1M rows: the staging COPY itself (≈ 2.2 s), the per-day summary with its checksum over every "
          "column (≈ 0.9 s) and the repeated-key count (≈ 0.9 s, changed days only since 0.10.0) come before a single row "
          "is written — they are what lets a failed day change nothing and an unchanged day write nothing — and then "
          "`INSERT … SELECT` from the staging table maintains the four indexes row by row, as the pipe does. The pipe does "
          "only the last step. At 10,000 rows the fixed costs show: a connection with TLS and scram, and one round trip "
          "asking the source for its answer's column types (binary or text) before the COPY. Private memory is RssAnon "
          "sampled every 10 ms (shared buffers excluded). **Into a new month** (since 0.11.0; a template whose month has no "
          "partition yet, a day of as many rows 400 days earlier): the day's rows go from the staging table into a table "
          "without indexes, which then gets the indexes, ANALYZE and is attached; compared with the bulk floor. The "
          "staging table's work is the same as for a day into a month that has its partition.\n")
    if "backfill" in R:
        b = R["backfill"]
        a("## Backfill a year\n")
        a(f"| | seconds | ratio |\n|---|---|---|\n| `CALL _wh.backfill` 365 days, {b['rows']:,} rows (a month per remote query) | "
          f"{b['wh_s']:.1f} | **{b['ratio_bulk']:.2f}×** the bulk floor |\n"
          f"| binary COPY of the year into a table without indexes, then the index builds (bulk floor) | {b['copy_bulk_s']:.1f} | 1.00× |\n"
          f"| one bulk dblink CTAS of the year + the same indexes (0.5.0's baseline) | {b['bulk_ctas_s']:.1f} | wh {b['ratio']:.2f}× |\n")
        a("Target (issue 24) ≤ 1.2× the bulk floor. A chunk per month: 13 remote queries and commits instead of 365. Since "
          "0.11.0 each month that has no partition yet is built aside and attached (issue 24, item 7): here all 13. What "
          "bounds it, profiled on a month of 310,000 rows: the fetch into the staging table (1.3–1.8 s: the source's "
          "query of the month's days and the COPY into a temporary table), the checks (0.2–0.35 s) and the write "
          "(1.3–1.7 s: the rows copied from the staging table into the month aside ≈ 0.45 s, the four index builds "
          "≈ 0.6 s, ANALYZE ≈ 0.3 s), where the floor spends ≈ 1.6 s a month in all. The rows cross two tables (staging, "
          "then the month); COPYing them straight into the month built aside, checked there, is what is left to try.\n")
    if "fanout" in R:
        f = R["fanout"]
        a("## Eight slow tenants refreshed together\n")
        a(f"| | seconds | ratio |\n|---|---|---|\n| `update_all_tenants` of {f['tenants']} tenants whose sources take 2 s a day "
          f"(the day and its lookback day) | {f['all_s']:.2f} | **{f['ratio']:.2f}×** |\n"
          f"| `update_mv_window` of one of them, the same two days | {f['one_s']:.2f} | 1.00× |\n")
        a("Target (issue 24) ≤ 1.2×: the queries go out to up to `wh.max_source_connections` (16) tenants at once and the "
          "answers are streamed in one at a time as they begin to arrive.\n")
    if "pool" in R:
        p = R["pool"]
        a(f"## A thousand tenants: the refresh pool's hourly cycle\n")
        a(f"{p['tenants']:,} tenants registered (three with no rows), each reading only its own rows of a shared table as its "
          "own login over SSL + scram (`WHERE tenant = current_user::text COLLATE \"default\"`, so the source's index on "
          "(tenant, time) serves it), in three source databases of one source server "
          f"(PostgreSQL's default max_connections = 100); {p['rows_per_day']:,} rows a tenant-day in the seeds' 20 columns, "
          f"today and yesterday. `_wh.schedule_refresh(…, '1 hour')`, its {p['workers']} workers run as pg_cron runs them "
          f"(`CALL _wh.run_pool(k)` at once), `wh.max_source_connections` {p['max_source_connections']}, "
          f"`wh.max_connections_per_host` {p['max_connections_per_host']}. Registering the tenants took {p['register_s']:.0f} s.\n")
        a("| cycle | wall | per tenant | warehouse CPU (the workers' backends) | source CPU | peak source connections (sampled) |")
        a("|---|---|---|---|---|---|")
        for label, key in (("first: every day new", "new"), ("an hour later: today grew 1%, yesterday unchanged", "hourly")):
            c = p[key]
            a(f"| {label} | **{c['wall_s']:.0f} s** | {c['wall_s'] * 1000 / p['tenants']:.0f} ms | {c['warehouse_cpu_s']:.0f} s | "
              f"{c['source_cpu_s']:.0f} s | **{c['peak_source_connections']}** |")
        a(f"\nThe floor for the first cycle's rows ({p['floor_rows']:,}): one binary `COPY … TO STDOUT` per source database "
          f"piped into one flat table with the same indexes, three at once: {p['floor_s']:.1f} s; the pool's first cycle is "
          f"**{p['ratio_new']:.1f}×** that (it opens {p['tenants'] * 1:,} scram + SSL connections, checks and registers "
          f"{2 * p['tenants']:,} tenant-days and logs each). Targets: the cycle ≤ 10 minutes with ≤ 16 source connections. "
          f"A worker holds one source connection at a time; the sample counts one more than the workers when a closed "
          "connection's backend on the source has not exited yet as the worker's next one starts.\n")
        a("Monitoring at this size (ms, one call after the cycles): " +
          ", ".join(f"`{k}` {v:.0f}" for k, v in p["monitoring_ms"].items()) + ".\n")
    if "monitoring" in R:
        m = R["monitoring"]
        a("## Monitoring at a thousand tenants\n")
        a(f"{m['tenants']:,} tenants × {m['templates']} templates × 365 registered days ({m['registry_rows']:,} registry rows) "
          "and 720,000 run-log rows of the last six hours; each view read by the operator login, best of 3. Target "
          "(issue 25) ≤ 100 ms each; one tenant paused, renamed or removed ≤ 1 s.\n")
        a("| view | ms |\n|---|---|")
        for k, v in m["views_ms"].items():
            a(f"| `{k}` | {v:.0f} |")
        if "unsettled_ms" in m:
            a(f"\nRight after the registry rows were written (every pair changed, none settled yet: the worst case, "
              f"computed from the registry): " + ", ".join(f"`{k}` {float(v):.0f} ms" for k, v in m["unsettled_ms"].items()) +
              f"; settling every pair (`_wh._settle_pairs(true)`, what the nightly maintenance job runs) "
              f"{float(m['settle_all_ms']):.0f} ms. The figures above are after it.")
        a("\n| call | ms |\n|---|---|")
        for k, v in m["tenant_ms"].items():
            a(f"| `{k}` | {v:.0f} |")
        a("\n`_wh.storage`, `_wh.gaps` and `_wh.health()` read each pair's kept figures (`_wh.pair_stats`, one row per "
          "tenant × template; the pairs changed since they were settled are computed from the registry); the others "
          "read each pair by index probes.\n")
    if "fold1000" in R:
        a("## Fold a year for every tenant\n")
        a("Last year's 365 days of every tenant (20 rows a day) folded by one `create_combined_table_by_year(t, NULL, year)`, "
          "against a CTAS of the same rows (sorted, the same indexes, ANALYZE). Peak private memory: the folding backend's "
          "RssAnon sampled every 10 ms, above what it held before; locks: its relation locks, sampled every 20 ms.\n")
        a("| tenants | tenant-days | rows | fold s | CTAS s | ratio | peak private memory | relation locks |\n|---|---|---|---|---|---|---|---|")
        for k, f in R["fold1000"].items():
            a(f"| {int(k):,} | {f['tenant_days']:,} | {f['rows']:,} | {float(f['wh_s']):.1f} | {float(f['ctas_s']):.1f} | "
              f"**{float(f['ratio']):.2f}×** | {float(f['peak_private_mb']):.0f} MB | {f['peak_relation_locks']} |")
        a("")
    if "columnar" in R:
        col = R["columnar"]
        b = col["bytes"]
        a("## A finished year in columnar storage\n")
        a(f"Last year of {col['tenants']:,} tenants × 365 days × {col['rows_per_day']} rows ({col['rows']:,} rows): folded as heap, "
          "then compressed to columnar (citus_columnar 13.2; the nightly maintenance's path, the same build as a fold with "
          "`fold_storage => 'columnar'`), against a flat heap table of the same rows (sorted by tenant and time, the same "
          "indexes). Bytes: the table alone / with its indexes. Shapes: median execution of 3 after a warm-up, read by the BI "
          "login through `public.<template>` (the flat table directly). Targets (issue 26): bytes ≤ 0.35× heap, the full-year "
          "shape ≤ 0.5× heap, jit off and on.\n")
        a("| | table bytes | with indexes | table vs heap | with indexes vs heap |\n|---|---|---|---|---|")
        for k in ("flat", "heap", "columnar"):
            tb, tot = b[k]
            a(f"| {k} | {tb / 1048576:.0f} MB | {tot / 1048576:.0f} MB | **{tb / b['heap'][0]:.2f}×** | {tot / b['heap'][1]:.2f}× |")
        a("\n| shape | flat ms | heap year ms | columnar year ms | columnar vs heap |\n|---|---|---|---|---|")
        for shape, v in col["shapes_ms"].items():
            a(f"| {shape} | {v['flat']:.0f} | {v['heap']:.0f} | {v['columnar']:.0f} | **{v['columnar'] / v['heap']:.2f}×** |")
        if "cold_ms" in col:
            a("\nThe first read after a restart with the OS page cache dropped (a finished year is mostly on disk; jit on):\n")
            a("| shape, cold | flat ms | heap year ms | columnar year ms | columnar vs heap |\n|---|---|---|---|---|")
            for shape, v in col["cold_ms"].items():
                a(f"| {shape} | {v['flat']:.0f} | {v['heap']:.0f} | {v['columnar']:.0f} | **{v['columnar'] / v['heap']:.2f}×** |")
        a(f"\nFolding the year as heap took {col['fold_heap_s']:.0f} s; compressing it to columnar {col['compress_s']:.0f} s. "
          f"A late change to the columnar year (here one tenant's January deleted by `apply_retention`) rewrites the whole "
          f"year as heap first, in the same transaction: {col['late_change_s']:.0f} s; the next night compresses it again.\n")
    if "citus" in R:
        ci = R["citus"]
        a("## Past one machine: a Citus cluster against one node\n")
        a(f"{ci['tenants']} tenants × {ci['days']} days up to today × {ci['rows_per_day']} rows "
          f"({ci['rows']['cluster']:,} rows on each side) in one template, on a Citus 13.2 coordinator and two workers "
          f"({ci['shard_count']} shards, distributed by tenant with `_wh.distribute`; PostgreSQL's defaults plus what Citus "
          "needs: `shared_preload_libraries`, `max_prepared_transactions = 64`, `max_worker_processes = 16`) and on one node "
          "(the same server build, default settings), read by the BI login through `public.<template>`: median planning + execution of 5 after "
          "a warm-up. All three nodes run on this one machine (2 cores), so the cluster shows its overhead here, not its "
          "scale-out: every shard query is a connection and a round trip on loopback.\n")
        a("| shape | one node ms | cluster ms | cluster vs one node |\n|---|---|---|---|")
        for shape, v in ci["shapes_ms"].items():
            a(f"| {shape} | {v['one node']:.1f} | {v['cluster']:.1f} | **{v['cluster'] / v['one node']:.2f}×** |")
        a("\nOne tenant's query on the cluster (`EXPLAIN`): routed to one worker.\n")
        a("```\n" + "\n".join(ci["one_tenant_plan"]) + "\n```\n")
        f = ci["fetch"]
        a("| fetching the harness's 3 tenants' sources (over SSL + scram) | one node s | cluster s | cluster vs one node |\n|---|---|---|---|")
        a(f"| backfill of 30 days ({f['cluster']['rows']:,} rows) | {f['one node']['backfill_s']:.2f} | {f['cluster']['backfill_s']:.2f} | "
          f"**{f['cluster']['backfill_s'] / f['one node']['backfill_s']:.2f}×** |")
        a(f"| a changed day refreshed (median of 9) | {f['one node']['refresh_s'] * 1000:.0f} ms | {f['cluster']['refresh_s'] * 1000:.0f} ms | "
          f"**{f['cluster']['refresh_s'] / f['one node']['refresh_s']:.2f}×** |")
        h = ci["health_ms"]
        a(f"\n`_wh.health()` over these {ci['tenants']} registered tenants (average of 3): {h['one node']:.0f} ms on one node, "
          f"{h['cluster']:.0f} ms on the cluster, where it probes each tenant's newest day with a query of its own (Citus plans "
          f"no subquery correlated with a distributed table): {h['cluster'] / ci['tenants']:.1f} ms a tenant.\n")
        a(f"\nLoading the read side's rows straight into the table took {ci['load_s']['one node']:.0f} s on one node and "
          f"{ci['load_s']['cluster']:.0f} s on the cluster.\n")
    if "verify" in R:
        v = R["verify"]
        a("## Reconcile a year with its source\n")
        a(f"| | seconds | ratio |\n|---|---|---|\n| `_wh.verify` of the same 365 days ({v['rows']:,} rows), all in order | "
          f"{v['verify_s']:.1f} | **{v['ratio']:.2f}×** the backfill |\n| the same with 3 days changed at the source, "
          f"`repair => true` | {v['repair_3_days_s']:.1f} | |\n| `CALL _wh.backfill` of the year (above) | {v['backfill_s']:.1f} | 1.00× |\n")
        a("Each day's row count and checksum over every column are computed on the source (one query per month) and "
          "compared with the same figures of the stored rows: no row crosses the network. Repair fetches exactly the "
          "drifted days again.\n")
    if "fold" in R:
        f = R["fold"]
        a("## Fold a finished year\n")
        a(f"| | seconds | ratio |\n|---|---|---|\n| `create_combined_table_by_year` ({f['rows']:,} rows) | {f['wh_s']:.2f} | "
          f"**{f['ratio']:.2f}×** |\n| CTAS of the same rows, sorted, + the same indexes + ANALYZE | {f['ctas_s']:.2f} | 1.00× |\n")
        a(f"Phases (ms): {', '.join(f'{k} {v}' for k, v in f['phase_ms'].items())}. Target ≤ 1.5×. What bounds it: the fold "
          "verifies every tenant-day against the registry (a pass computing a checksum over every column), and copies with "
          "INSERT into a table that checks its partition bounds row by row where the CTAS writes a new table in bulk; "
          "index builds and ANALYZE cost the same on both sides.\n")
    a((ROOT / "bench/baseline-0.1.0.md").read_text())
    (path or ROOT / "BENCHMARKS.md").write_text("\n".join(L) + "\n")
