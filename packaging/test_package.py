"""The Debian package installs wh on a machine without Rust: built by scripts/package.sh,
installed with apt after the cargo-installed files are removed, CREATE EXTENSION wh CASCADE
on a scratch cluster, then removed with apt (its files gone with it).

Run by scripts/test.sh after the other tiers (it replaces the installed wh, then
scripts/test.sh installs the cargo build again): WH_PACKAGE_TEST=1 pytest packaging."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import harness  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("WH_PORT_BASE", "55410")) + 3

pytestmark = pytest.mark.skipif(os.environ.get("WH_PACKAGE_TEST") != "1", reason="run by scripts/test.sh (replaces the installed wh)")


def run(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, text=True, capture_output=True, **kw)


def version():
    for line in (ROOT / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in Cargo.toml")


def test_the_package_installs_creates_and_removes():
    deb = ROOT / "target" / f"wh_{version()}_amd64.deb"
    assert deb.exists(), "scripts/package.sh builds it first"
    files = [line.split()[-1].lstrip(".") for line in run("dpkg-deb", "-c", str(deb)).stdout.splitlines() if not line.endswith("/")]
    ext = [f for f in files if f.startswith("/usr/share/postgresql/15/extension/") or f.startswith("/usr/lib/postgresql/15/lib/")]
    assert "/usr/lib/postgresql/15/lib/wh.so" in ext and f"/usr/share/postgresql/15/extension/wh--{version()}.sql" in ext
    assert any(f.endswith("wh--0.3.0--0.4.0.sql") for f in ext), "the upgrade scripts ship too"
    assert "/usr/share/wh/adopt.sh" in files and "/usr/share/wh/adopt-prepare.sql" in files
    info = run("dpkg-deb", "-f", str(deb), "Package", "Version", "Depends").stdout
    assert "Package: wh" in info and "postgresql-15" in info
    # A machine without the cargo build: its files go first.
    for f in Path("/usr/share/postgresql/15/extension").glob("wh*"):
        f.unlink()
    Path("/usr/lib/postgresql/15/lib/wh.so").unlink(missing_ok=True)
    run("apt-get", "install", "-y", "-q", str(deb), env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    try:
        assert "install ok installed" in run("dpkg-query", "-W", "-f=${Status}", "wh").stdout
        assert all(Path(f).exists() for f in ext)
        # A scratch cluster: CREATE EXTENSION wh CASCADE from the package's files.
        scratch = Path(tempfile.mkdtemp(prefix="wh-pkg.", dir="/tmp"))
        os.chmod(scratch, 0o755)
        harness._chown_postgres(scratch)
        data, sock = scratch / "data", scratch
        try:
            harness.as_postgres([str(harness.PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust", "--no-sync"])
            harness.as_postgres([str(harness.PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(scratch / "log"),
                                 "-o", f"-p {PORT} -c listen_addresses='' -c unix_socket_directories='{sock}'", "start"])
            with psycopg.connect(host=str(sock), port=PORT, user="postgres", dbname="postgres", autocommit=True) as c:
                c.execute("CREATE EXTENSION wh CASCADE")
                assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'wh'").fetchone()[0] == version()
                assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'dblink'").fetchone()[0] == 1
                c.execute("SET wh.unsafe_allow_superuser = on")
                assert c.execute("SELECT _wh.health() ->> 'status'").fetchone()[0] == "ok"
                c.execute("DROP EXTENSION wh")
        finally:
            harness.as_postgres([str(harness.PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"], check=False)
            run("rm", "-rf", str(scratch))
    finally:
        run("apt-get", "remove", "-y", "-q", "wh", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    assert not any(Path(f).exists() for f in ext), "apt remove takes the files"
