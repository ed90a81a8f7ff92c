"""A real Citus 13.2 cluster (for wh's distributed tier and the benchmark's cluster section): a coordinator and two workers on
loopback beside the harness's source cluster (tenants over SSL + scram, as everywhere).

Every node: SSL with the harness's certificate, scram-sha-256 for every TCP login,
`shared_preload_libraries` citus (the coordinator: citus,pg_cron), prepared transactions
for Citus's two-phase commits. The coordinator reaches the workers over SSL (verify-full
against the harness's CA) with the passwords in `pg_dist_authinfo` (a superuser-only
catalog); `wh_admin`, which wh's functions run as and Citus connects as, may log in on
the workers only (NOLOGIN on the coordinator, where operators log in as themselves).

Ports: WH_PORT_BASE + 20 (coordinator), + 21 and + 22 (workers), beside the harness's."""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import harness  # noqa: E402

NODE_PASSWORDS = {"postgres": "citus-postgres-pw", "wh_admin": "citus-wh-admin-pw"}


def _node(run: Path, name: str, port: int, coordinator: bool) -> harness.Cluster:
    sock = run / "sock"
    conf = f"""
shared_preload_libraries = '{"citus,pg_cron" if coordinator else "citus"}'
max_prepared_transactions = 64
max_worker_processes = 16
ssl = on
ssl_cert_file = '{run}/ssl/server.crt'
ssl_key_file = '{run}/ssl/server.key'
password_encryption = 'scram-sha-256'
citus.node_conninfo = 'sslmode=verify-full sslrootcert={run}/ssl/ca.crt'
"""
    if coordinator:
        conf += f"cron.database_name = 'warehouse'\ncron.host = '{sock}'\ncron.timezone = 'UTC'\n"
    hba = ("local all all trust\n"
           "hostssl all all 127.0.0.1/32 scram-sha-256\n"
           "hostnossl all all 127.0.0.1/32 reject\n")
    return harness._initdb(run, name, port, conf, hba)


def wire_database(env, coordinator, workers, db: str, cron: bool = False):
    """A database of the cluster: Citus on every node, the workers added, wh installed
    through the coordinator (Citus runs it on every worker too), pg_cron on the coordinator
    if asked (the database cron.database_name names), the logins' passwords in its
    pg_dist_authinfo; the logins made if missing (roles are the nodes', not a database's),
    wh_admin allowed to log in on the workers."""
    for node in (coordinator, *workers):
        with node.connect() as c:
            c.execute(f"ALTER ROLE postgres PASSWORD '{NODE_PASSWORDS['postgres']}'")
            c.execute(f"CREATE DATABASE {db}")
        with node.connect(db) as c:
            c.execute("CREATE EXTENSION citus")
    with coordinator.connect(db) as c:
        c.execute("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, 'postgres', %s)",
                  (f"password={NODE_PASSWORDS['postgres']}",))
        c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (coordinator.port,))
        for w in workers:
            c.execute("SELECT citus_add_node('127.0.0.1', %s)", (w.port,))
        c.execute("CREATE EXTENSION wh CASCADE")
        if cron:
            # pg_cron serves the coordinator only.
            c.execute("SET citus.enable_ddl_propagation = off")
            c.execute("CREATE EXTENSION pg_cron")
            c.execute("GRANT USAGE ON SCHEMA cron TO wh_admin")
            c.execute("RESET citus.enable_ddl_propagation")
        # The logins (the nodes' roles: made once, Citus propagates them to the workers).
        for role, pw, member_of in (("whadmin", env.admin_password, "wh_admin"), ("phood_ro", env.reader_password, "wh_reader")):
            if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                c.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{pw}' IN ROLE {member_of}")
        for role, pw in (("wh_admin", NODE_PASSWORDS["wh_admin"]), ("whadmin", env.admin_password),
                         ("phood_ro", env.reader_password)):
            c.execute("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, %s, %s)", (role, f"password={pw}"))
    for w in workers:
        with w.connect(db) as c:
            # wh_admin logs in on the workers only (never through the coordinator's ALTER).
            c.execute("SET citus.enable_alter_role_propagation = off")
            c.execute(f"ALTER ROLE wh_admin LOGIN PASSWORD '{NODE_PASSWORDS['wh_admin']}'")


def drop_database(nodes, db: str):
    for node in nodes:
        with node.connect() as c:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def start(env):
    """The coordinator and two workers started beside the harness's clusters, database
    `warehouse` wired (pg_cron on the coordinator), the logins made: the harness's Env with
    the coordinator as its warehouse and `.workers`, and every node (for `stop`)."""
    run = Path(env.run_dir)
    base = harness.PORT_BASE + 20
    coordinator = _node(run, "coordinator", base, True)
    workers = [_node(run, f"worker{i}", base + i, False) for i in (1, 2)]
    nodes = [coordinator, *workers]
    try:
        for n in nodes:
            n.start()
        cenv = replace(env, warehouse=coordinator)
        wire_database(cenv, coordinator, workers, "warehouse", cron=True)
    except BaseException:
        stop(nodes)
        raise
    cenv.workers = workers
    return cenv, nodes


def stop(nodes):
    for n in nodes:
        n.stop()

