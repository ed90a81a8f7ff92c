"""Real clusters for wh's end-to-end tests, the demo and the benchmark.

Two PostgreSQL 15 clusters, both run by the `postgres` OS user on loopback:

* the **warehouse** cluster: pg_cron preloaded (`cron.host` = its socket directory,
  local trust), database `warehouse` with `CREATE EXTENSION wh CASCADE`, a login
  `whadmin` (member of wh_admin) and a login `phood_ro` (member of wh_reader);
* the **source** cluster: TCP only with SSL (a CA and server certificate made here)
  and scram-sha-256 passwords, three tenant databases `tenant_a`, `tenant_b`,
  `tenant_c` holding `phood_foodlogsum` plus the `locations` and `stations` it joins,
  filled by a deterministic generator, and one SELECT-only login per tenant.

Everything lives in a fresh `mktemp -d /tmp/wh-run.XXXX` directory (the postgres user
cannot enter /root, and CI's clone may live anywhere); `target/wh-run` points at it.

Command line: python3 tests/harness.py start|stop|seed|env
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
PG_BIN = Path(os.environ.get("WH_PG_BIN", "/usr/lib/postgresql/15/bin"))
TENANTS = ("tenant_a", "tenant_b", "tenant_c")
PORT_BASE = int(os.environ.get("WH_PORT_BASE", "55410"))
# One run directory link per port base, so the benchmark can run beside the tests.
RUN_LINK = TARGET / ("wh-run" if PORT_BASE == 55410 else f"wh-run-{PORT_BASE}")


@dataclass
class Cluster:
    name: str
    port: int
    data: str
    sock: str

    def dsn(self, dbname: str = "postgres", user: str = "postgres", **kw) -> str:
        parts = {"host": self.sock, "port": str(self.port), "dbname": dbname, "user": user}
        parts.update({k: str(v) for k, v in kw.items()})
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def tcp_dsn(self, dbname: str, user: str, password: str, **kw) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.port), "dbname": dbname, "user": user, "password": password}
        parts.update({k: str(v) for k, v in kw.items()})
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def connect(self, dbname: str = "postgres", user: str = "postgres", autocommit: bool = True, **kw):
        return psycopg.connect(self.dsn(dbname, user, **kw), autocommit=autocommit)

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return as_postgres([str(PG_BIN / "pg_ctl"), "-D", self.data, *args], check=check)

    def start(self) -> None:
        log = Path(self.data).parent / f"{self.name}.log"
        cmd = [str(PG_BIN / "pg_ctl"), "-D", self.data, "-w", "-t", "60", "-l", str(log), "start"]
        for attempt in range(3):
            # RUST_BACKTRACE as a DBA's environment may set it: no error may carry a backtrace.
            env_words = fake_clock(Path(self.data).parent) or ["env"]
            done = as_postgres(env_words + ["RUST_BACKTRACE=1"] + cmd, check=False)
            if done.returncode == 0:
                return
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            # A port another cluster of this machine just let go of: try again shortly.
            if "Address already in use" not in tail and "could not bind" not in tail:
                break
            time.sleep(2 * (attempt + 1))
        raise RuntimeError(f"{self.name} did not start (pg_ctl: {done.stdout.strip()} {done.stderr.strip()}); its log ends:\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        if Path(self.data, "postmaster.pid").exists():
            self.pg_ctl("-w", "-m", mode, "stop", check=False)

    def is_running(self) -> bool:
        return self.pg_ctl("status", check=False).returncode == 0


@dataclass
class Env:
    run_dir: str
    warehouse: Cluster
    source: Cluster
    ca_cert: str
    admin_password: str = "whadmin-pw"
    reader_password: str = "phood-ro-pw"
    tenant_passwords: dict = field(default_factory=dict)
    warehouse_db: str = "warehouse"

    def save(self) -> None:
        Path(self.run_dir, "env.json").write_text(json.dumps(asdict(self), indent=2))

    @staticmethod
    def load() -> "Env":
        d = json.loads((RUN_LINK / "env.json").read_text())
        d["warehouse"] = Cluster(**d["warehouse"])
        d["source"] = Cluster(**d["source"])
        return Env(**d)

    # Connections used by tests and the demo.
    def wh_super(self, autocommit: bool = True):
        return self.warehouse.connect(self.warehouse_db, autocommit=autocommit)

    def wh_admin(self, autocommit: bool = True):
        """The operator: a non-superuser login that is a member of wh_admin, over TCP."""
        return psycopg.connect(
            self.warehouse.tcp_dsn(self.warehouse_db, "whadmin", self.admin_password), autocommit=autocommit
        )

    def wh_reader(self, autocommit: bool = True):
        """The BI login: a member of wh_reader, over TCP."""
        return psycopg.connect(
            self.warehouse.tcp_dsn(self.warehouse_db, "phood_ro", self.reader_password), autocommit=autocommit
        )

    def source_super(self, tenant: str, autocommit: bool = True):
        return self.source.connect(tenant, autocommit=autocommit)

    def tenant_login(self, tenant: str) -> tuple[str, str]:
        return f"{tenant}_ro", self.tenant_passwords[tenant]


def as_postgres(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command as the postgres OS user (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        cmd = ["sudo", "-n", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


# WH_FAKETIME="YYYY-MM-DD HH:MM:SS" (UTC) runs both clusters with their wall clocks moved
# to that moment when first started (tests/clock_shift.c, preloaded; one offset for every
# start in this run), so the suite proves it passes on 1 January, on 29 February and
# across midnight UTC. Only the servers' clocks move: the tests take "today" from the server.
_fake_offset: int | None = None


def fake_clock(run: Path) -> list[str]:
    """`env …` words that start a server on the moved clock, or nothing."""
    global _fake_offset
    target = os.environ.get("WH_FAKETIME")
    if not target:
        return []
    shim = run / "clock_shift.so"
    if not shim.exists():
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(ROOT / "tests" / "clock_shift.c"), "-ldl"],
                       check=True, capture_output=True)
        os.chmod(shim, 0o755)
    if _fake_offset is None:
        import datetime as dt

        moment = dt.datetime.strptime(target, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
        _fake_offset = int(moment.timestamp() - time.time())
    return ["env", f"LD_PRELOAD={shim}", f"WH_CLOCK_OFFSET={_fake_offset}"]


def server_today(conn):
    """The warehouse's UTC date now (what wh calls today): never the test machine's."""
    return conn.execute("SELECT (clock_timestamp() AT TIME ZONE 'UTC')::date").fetchone()[0]


def _chown_postgres(path: Path) -> None:
    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _make_certs(run: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (verify-full works)."""
    ssl = run / "ssl"
    ssl.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=ssl)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=wh test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")
    (ssl / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "3650", "-extfile", "ext.cnf", "-out", "server.crt")
    for f in ssl.iterdir():
        _chown_postgres(f)
        os.chmod(f, 0o600 if f.suffix == ".key" else 0o644)
    _chown_postgres(ssl)
    os.chmod(ssl, 0o755)


def _initdb(run: Path, name: str, port: int, conf: str, hba: str) -> Cluster:
    data = run / name
    sock = run / "sock"
    as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
    base = f"""
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sock}'
fsync = off
synchronous_commit = on  # commits reach the WAL before they are acknowledged (crash tests rely on it)
full_page_writes = off
max_connections = 120
shared_buffers = 256MB
log_min_messages = warning
log_line_prefix = '%m [%p] %u@%d '
TimeZone = 'UTC'
"""
    as_postgres(["tee", "-a", str(data / "postgresql.conf")], input=base + conf)
    as_postgres(["tee", str(data / "pg_hba.conf")], input=hba)
    return Cluster(name=name, port=port, data=str(data), sock=str(sock))


def start(fresh: bool = True) -> Env:
    """Start both clusters in a new run directory; an earlier run is stopped and removed."""
    if fresh:
        stop()
    TARGET.mkdir(exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="wh-run.", dir="/tmp"))
    os.chmod(run, 0o755)
    _chown_postgres(run)
    (run / "sock").mkdir()
    _chown_postgres(run / "sock")
    if RUN_LINK.is_symlink() or RUN_LINK.exists():
        RUN_LINK.unlink()
    RUN_LINK.symlink_to(run)
    _make_certs(run)

    sock = run / "sock"
    warehouse = _initdb(
        run, "warehouse", PORT_BASE,
        f"""
shared_preload_libraries = 'pg_cron'
cron.database_name = 'warehouse'
cron.host = '{sock}'
cron.timezone = 'UTC'
max_worker_processes = 16
""",
        "local all all trust\n"
        # pg_basebackup of a hot standby (tests/test_platform.py), over the socket only.
        "local replication all trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n",
    )
    source = _initdb(
        run, "source", PORT_BASE + 1,
        f"""
ssl = on
ssl_cert_file = '{run}/ssl/server.crt'
ssl_key_file = '{run}/ssl/server.key'
password_encryption = 'scram-sha-256'
""",
        "local all all trust\n"
        # A login the source trusts without a password: wh must refuse to use it.
        "hostssl all trust_ro 127.0.0.1/32 trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 127.0.0.1/32 reject\n",
    )
    env = Env(run_dir=str(run), warehouse=warehouse, source=source, ca_cert=str(run / "ssl" / "ca.crt"))
    warehouse.start()
    source.start()
    _setup_warehouse(env)
    _setup_sources(env)
    env.save()
    return env


def _setup_warehouse(env: Env) -> None:
    with env.warehouse.connect() as c:
        c.execute(f"CREATE DATABASE {env.warehouse_db}")
    with env.wh_super() as c:
        c.execute("CREATE EXTENSION wh CASCADE")
        c.execute("CREATE EXTENSION pg_cron")
        c.execute(f"CREATE ROLE whadmin LOGIN PASSWORD '{env.admin_password}' IN ROLE wh_admin")
        c.execute(f"CREATE ROLE phood_ro LOGIN PASSWORD '{env.reader_password}' IN ROLE wh_reader")
        # pg_cron: operators schedule their own jobs with cron.schedule (README, "Scheduling").
        c.execute("GRANT USAGE ON SCHEMA cron TO wh_admin")


SOURCE_DDL = """
CREATE TABLE locations (
    location_id integer PRIMARY KEY,
    store       text NOT NULL,
    region      text NOT NULL
);
CREATE TABLE stations (
    station_id  integer PRIMARY KEY,
    location_id integer NOT NULL REFERENCES locations,
    station     text NOT NULL
);
CREATE TABLE phood_foodlogsum (
    id                bigint PRIMARY KEY,
    station_id        integer NOT NULL REFERENCES stations,
    validation_status text,
    action_taken_id   integer,
    action_taken      text,
    name              text,
    quantity          integer,
    average_weight    numeric(10,3),
    weight            numeric(12,3),
    client            text,
    food_category     text,
    cost_per_lb       numeric(10,2),
    target_weight     numeric(10,3),
    price_per_lb      numeric(10,2),
    action_reason     text,
    client_id         integer,
    logged_time       timestamptz NOT NULL,
    flags             text[]
);
CREATE INDEX ON phood_foodlogsum (logged_time);
INSERT INTO locations
SELECT l, 'store_' || l, (ARRAY['north','south','east','west'])[1 + l % 4]
FROM generate_series(1, 8) l;
INSERT INTO stations SELECT s, 1 + s % 8, 'station_' || s FROM generate_series(1, 24) s;
"""

# Deterministic rows: every value is a function of (tenant number, day, row number).
# %(t)s tenant number, %(start)s first day, %(days)s days, %(rows)s rows per day.
GENERATE = """
INSERT INTO phood_foodlogsum
SELECT id,
       1 + (h %% 24)::int,
       (ARRAY['valid','pending','rejected'])[1 + (h >> 3) %% 3],
       1 + ((h >> 5) %% 4)::int,
       (ARRAY['donated','composted','discarded','repurposed'])[1 + (h >> 5) %% 4],
       'item_' || ((h >> 7) %% 50),
       1 + ((h >> 9) %% 20)::int,
       round(((h >> 11) %% 5000) / 1000.0 + 0.1, 3),
       round(((h >> 13) %% 200000) / 100.0, 3),
       'client_' || %(t)s,
       (ARRAY['produce','dairy','bakery','meat','prepared'])[1 + (h >> 17) %% 5],
       round(((h >> 19) %% 900) / 100.0 + 0.5, 2),
       round(((h >> 21) %% 3000) / 1000.0, 3),
       round(((h >> 23) %% 1500) / 100.0 + 1, 2),
       CASE WHEN h %% 7 = 0 THEN 'overproduction' WHEN h %% 7 = 1 THEN 'spoilage' END,
       %(t)s,
       %(start)s::date::timestamp AT TIME ZONE 'UTC' + d * interval '1 day'
           + (r * (86399.0 / %(rows)s)) * interval '1 second',
       CASE WHEN h %% 5 = 0 THEN ARRAY['flagged'] ELSE '{}'::text[] END
FROM generate_series(0, %(days)s - 1) d,
     generate_series(0, %(rows)s - 1) r,
     LATERAL (SELECT (%(t)s::bigint * 10000000000000 + ((%(start)s::date - '2000-01-01'::date) + d)::bigint * 10000000 + r) AS id) i,
     LATERAL (SELECT abs(hashint8(i.id)::bigint) AS h) hh
"""


def _setup_sources(env: Env) -> None:
    with env.source.connect() as c:
        c.execute("CREATE ROLE trust_ro LOGIN")
        for i, t in enumerate(TENANTS):
            pw = f"pw-{t}-{os.urandom(4).hex()}"
            env.tenant_passwords[t] = pw
            c.execute(f"CREATE ROLE {t}_ro LOGIN PASSWORD '{pw}'")
            c.execute(f"CREATE DATABASE {t}")
            c.execute(f"REVOKE CONNECT ON DATABASE {t} FROM PUBLIC")
            c.execute(f"GRANT CONNECT ON DATABASE {t} TO {t}_ro, trust_ro")
    for t in TENANTS:
        with env.source_super(t) as c:
            c.execute(SOURCE_DDL)
            c.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {t}_ro, trust_ro")


def seed(env: Env, start_day: str, days: int, rows_per_day: int, tenants=TENANTS, append: bool = False) -> None:
    """Replace (or with `append`, add to) each tenant's phood_foodlogsum: `days` days from `start_day`.

    Tenant number i (1-based) gets `rows_per_day + 7*(i-1)` rows a day, so the tenants'
    figures differ."""
    for t in tenants:
        n = TENANTS.index(t) + 1
        with env.source_super(t) as c:
            if not append:
                c.execute("TRUNCATE phood_foodlogsum")
            c.execute(GENERATE, {"t": n, "start": start_day, "days": days, "rows": rows_per_day + 7 * (n - 1)})
            c.execute("ANALYZE phood_foodlogsum")


@contextlib.contextmanager
def scratch_database(env: Env, name: str, extension: bool = True):
    """A fresh database in the warehouse cluster (with `CREATE EXTENSION wh CASCADE` unless
    told otherwise), dropped afterwards whatever happens."""
    with env.warehouse.connect() as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    try:
        if extension:
            with env.warehouse.connect(name) as c:
                c.execute("CREATE EXTENSION wh CASCADE")
        yield name
    finally:
        with env.warehouse.connect() as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def script_vocabulary() -> tuple[list[str], list[str]]:
    """The types and operators wh's install and upgrade scripts (as installed) use: every
    `::type` cast and declared column or argument type, every operator token."""
    share = Path(subprocess.run(["/usr/bin/pg_config", "--sharedir"], capture_output=True, text=True, check=True).stdout.strip())
    text = "\n".join(f.read_text() for f in sorted((share / "extension").glob("wh--*.sql")))
    types = set(re.findall(r"::\s*(?:pg_catalog\.)?([a-z_][a-z0-9_]*)", text))
    types |= {"oid", "regclass", "regtype", "regnamespace", "regprocedure", "regrole", "name", "text", "bigint",
              "integer", "smallint", "numeric", "date", "timestamptz", "timestamp", "interval", "boolean", "jsonb",
              "char", "varchar", "double precision", "real"}
    candidates = ["=", "<>", "<", ">", "<=", ">=", "~~", "!~~", "~", "!~", "~*", "*", "+", "-", "/", "%", "||",
                  "@>", "<@", "&&", "->", "->>", "#>>", "?"]
    ops = [o for o in candidates if re.search(r"(?<![=<>!~*+\-/%|@&#?])" + re.escape(o) + r"(?![=<>!~*+\-/%|@&#?])", text)]
    return sorted(types), ops


PLANT_FUNCTION = """
CREATE FUNCTION public.{fn}(l {l}, r {r}) RETURNS {res} LANGUAGE plpgsql AS $p$
DECLARE
    is_super boolean := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
BEGIN
    INSERT INTO public.pwned (tag, who, super) VALUES ({tag}, current_user, is_super);
    IF is_super THEN
        RAISE EXCEPTION 'planted operator % ran as the superuser %', {tag}, current_user;
    END IF;
    RETURN l OPERATOR(pg_catalog.{op}) r;
END $p$"""


def plant_operators(conn) -> int:
    """As the login of `conn` (which may create in public): an operator in public for every
    operator and type pair of wh's scripts that pg_catalog resolves only through an implicit
    cast (`oid = regclass`, `bigint * numeric`, …), so it would match exactly if public were
    searched. Each records who ran it in public.pwned and refuses to run as a superuser.
    Returns how many were planted."""
    types, ops = script_vocabulary()
    plan = conn.execute(
        """
        WITH t AS (SELECT DISTINCT pg_catalog.to_regtype(x)::oid AS oid FROM unnest(%s::text[]) x
                   WHERE pg_catalog.to_regtype(x) IS NOT NULL),
        reach AS (  -- a type and what it reaches implicitly (itself, implicit or binary casts)
            SELECT t.oid AS ty, t.oid AS target FROM t
            UNION SELECT c.castsource, c.casttarget FROM pg_cast c JOIN t ON t.oid = c.castsource WHERE c.castcontext = 'i')
        SELECT DISTINCT ON (o.oprname, l.ty, r.ty) o.oprname, l.ty::regtype::text, r.ty::regtype::text, o.oprresult::regtype::text
        FROM pg_operator o
        JOIN reach l ON l.target = o.oprleft JOIN reach r ON r.target = o.oprright
        WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprname = ANY (%s) AND o.oprkind = 'b'
          AND (l.ty <> o.oprleft OR r.ty <> o.oprright)
          AND NOT EXISTS (SELECT 1 FROM pg_operator x WHERE x.oprnamespace = 'pg_catalog'::regnamespace
                          AND x.oprname = o.oprname AND x.oprleft = l.ty AND x.oprright = r.ty)
        ORDER BY o.oprname, l.ty, r.ty, o.oid
        """,
        (types, ops),
    ).fetchall()
    for i, (op, left, right, result) in enumerate(plan):
        tag = "'" + f"{left} {op} {right}".replace("'", "''") + "'"
        conn.execute(PLANT_FUNCTION.format(fn=f"planted_{i}", l=left, r=right, res=result, tag=tag, op=op))
        conn.execute(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = public.planted_{i})")
    return len(plan)


def foreign_dependencies(conn) -> list:
    """wh's members (views, routines, defaults) that depend on an operator or function
    outside pg_catalog and wh's own schema: each would run a planter's code. (This query
    is a superuser's too: it pins its own search_path, or `oid = regclass` below would
    find a planted operator.)"""
    conn.execute("SET search_path = pg_catalog, pg_temp")
    return conn.execute(
        """
        SELECT pg_describe_object(d.classid, d.objid, d.objsubid), pg_describe_object(d.refclassid, d.refobjid, 0)
        FROM pg_depend d
        LEFT JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND rw.oid = d.objid
        LEFT JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
        LEFT JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
        WHERE coalesce(o.oprnamespace, p.pronamespace) NOT IN ('pg_catalog'::regnamespace, '_wh'::regnamespace)
          AND (d.classid = 'pg_rewrite'::regclass AND rw.ev_class IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = '_wh'::regnamespace)
               OR d.classid = 'pg_proc'::regclass AND d.objid IN (SELECT oid FROM pg_proc WHERE pronamespace = '_wh'::regnamespace)
               OR d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT ad.oid FROM pg_attrdef ad JOIN pg_class c ON c.oid = ad.adrelid
                                                                     WHERE c.relnamespace = '_wh'::regnamespace))
          AND NOT (p.oid IS NOT NULL AND p.proname LIKE 'dblink%%')
        """
    ).fetchall()


def register_tenants(env: Env, conn, tenants=TENANTS, settings: bool = True) -> None:
    """Register the demo tenants through the API, as an operator would: with `settings`,
    every connection setting named (a change keeps what it does not name, so this also puts
    back what a test relaxed); without, the six arguments every release takes."""
    extra = (", sslmode => 'require', sslrootcert => '', remote_timeout => '30 min', channel_binding => 'require'"
             if settings else "")
    for t in tenants:
        user, password = env.tenant_login(t)
        conn.execute(
            "SELECT _wh.set_tenant_connection(tenant_name => %s, host => '127.0.0.1', port => %s, "
            f"dbname => %s, username => %s, password => %s{extra})",
            (t, env.source.port, t, user, password),
        )


def register_template(conn, name: str = "foodlogstats") -> None:
    """Register sql/templates/foodlogstats.sql, under another name if asked."""
    sql = (ROOT / "sql/templates/foodlogstats.sql").read_text()
    conn.execute(sql.replace("template_name      => 'foodlogstats'", f"template_name      => '{name}'"))


def pgbench(env: Env, script: str, seconds: int, clients: int = 20):
    """Run a pgbench custom script as the BI login (phood_ro) for `seconds` with `clients`
    clients: (return code, tps, failed transactions or None, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        [str(PG_BIN / "pgbench"), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", f.name,
         "-h", "127.0.0.1", "-p", str(env.warehouse.port), "-U", "phood_ro", env.warehouse_db],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": env.reader_password},
    )
    os.unlink(f.name)
    tps = float(re.search(r"tps = ([0-9.]+)", out.stdout)[1]) if "tps = " in out.stdout else 0.0
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    return out.returncode, tps, int(failed[1]) if failed else None, out.stdout + out.stderr


def progress_days(notices) -> int:
    """How many days the progress lines of a backfill or rebuild cover
    (`day 3/60 ...` or `days 1-31/60 ...`)."""
    total = 0
    for n in notices:
        head = n.split(" ", 2)
        if head[0] == "day":
            total += 1
        elif head[0] == "days":
            a, b = head[1].split("/")[0].split("-")
            total += int(b) - int(a) + 1
    return total


def peak_while(connect, count_sql: str, during):
    """Run `during()`; meanwhile sample `count_sql` (one count) every 20 ms on a connection
    from `connect()`. Returns (what `during` returned, the largest count seen)."""
    peak, stop = [0], threading.Event()

    def sample():
        with connect() as s:
            while not stop.is_set():
                peak[0] = max(peak[0], s.execute(count_sql).fetchone()[0])
                time.sleep(0.02)

    th = threading.Thread(target=sample)
    th.start()
    try:
        out = during()
    finally:
        stop.set()
        th.join()
    return out, peak[0]


def backend_descriptors(pid: int) -> list[str]:
    """A backend's open descriptors that are not PostgreSQL's relation files (its file cache
    keeps those of every relation it touched open): sockets, pipes, logs, others. The WAL
    segment it writes stands as one name (it moves on to the next as WAL fills)."""
    links = sorted(os.readlink(p) for p in Path(f"/proc/{pid}/fd").iterdir() if p.exists())
    return sorted(re.sub(r"/pg_wal/[0-9A-F]{24}$", "/pg_wal/<segment>", x)
                  for x in links if "/base/" not in x and "/global/" not in x)


def backend_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def figures_by_day(conn, relation, where=""):
    """{day: (rows, checksum of ids, sum(weight))} of a foodlogstats-shaped relation (a
    `timestamptz` logged_time, days in UTC): the numbers a warehouse must share with its sources."""
    return {
        d: (n, ck, w)
        for d, n, ck, w in conn.execute(
            f"SELECT (logged_time AT TIME ZONE 'UTC')::date, count(*), sum(hashint8(id)::numeric), sum(weight) "
            f"FROM {relation} {where} GROUP BY 1 ORDER BY 1"
        ).fetchall()
    }


def partitions(conn, template: str) -> list[tuple[str, str]]:
    """(schema, name) of every partition of the template's table (_wh_data.<template>), in name order."""
    return conn.execute(
        "SELECT c.relnamespace::regnamespace::text, c.relname::text FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 2",
        (f"_wh_data.{template}",),
    ).fetchall()


def months(first, last) -> list[str]:
    """YYYY_MM of every month from first to last (dates)."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}_{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def stop() -> None:
    """Stop the clusters of the current run (if any) and remove its directory."""
    if not (RUN_LINK.is_symlink() or RUN_LINK.exists()):
        return
    run = Path(os.path.realpath(RUN_LINK))
    for name in ("warehouse", "source"):
        data = run / name
        if (data / "postmaster.pid").exists():
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"], check=False)
    RUN_LINK.unlink()
    if run.is_dir() and run.name.startswith("wh-run."):
        shutil.rmtree(run, ignore_errors=True)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "env"
    if cmd == "start":
        env = start()
        print(f"warehouse: psql '{env.warehouse.dsn(env.warehouse_db)}'")
        print(f"source:    psql '{env.source.dsn('tenant_a')}'")
    elif cmd == "stop":
        stop()
    elif cmd == "seed":
        start_day, days, rows = argv[2], int(argv[3]), int(argv[4])
        seed(Env.load(), start_day, days, rows)
    elif cmd == "env":
        print(json.dumps(asdict(Env.load()), indent=2))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
