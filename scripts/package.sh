#!/usr/bin/env bash
# Build a Debian package of wh for PostgreSQL 15 that installs on a machine without Rust:
#   scripts/package.sh                 -> target/wh_<version>_amd64.deb
#   apt install ./target/wh_<version>_amd64.deb
# `cargo pgrx package` builds the release library and the SQL (with every upgrade script);
# dpkg-deb wraps them with a control file naming what wh needs at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out=target/package
root="$out/wh_${version}_${arch}"
rm -rf "$out"
mkdir -p "$out"

echo "== cargo pgrx package (release) for PostgreSQL 15"
cargo pgrx package --pg-config /usr/bin/pg_config --out-dir "$root" >target/package.log 2>&1 || { tail -40 target/package.log; exit 1; }
test -f "$root/usr/lib/postgresql/15/lib/wh.so"
test -f "$root/usr/share/postgresql/15/extension/wh.control"
test -f "$root/usr/share/postgresql/15/extension/wh--${version}.sql"

# Documentation a DBA can find after installing.
install -D -m 0644 README.md "$root/usr/share/doc/wh/README.md"
install -D -m 0644 SECURITY.md "$root/usr/share/doc/wh/SECURITY.md"
install -D -m 0644 sql/templates/foodlogstats.sql "$root/usr/share/doc/wh/examples/foodlogstats.sql"
# Adopting a seeds' warehouse: /usr/share/wh/adopt.sh "<superuser conninfo>" "<operator conninfo>"
install -D -m 0755 scripts/adopt.sh "$root/usr/share/wh/adopt.sh"
install -D -m 0644 sql/adopt/prepare.sql "$root/usr/share/wh/adopt-prepare.sql"

# Run-time needs: the server (its contrib holds dblink), the C and gcc runtime libraries
# wh.so links (objdump NEEDED: libc.so.6, libgcc_s.so.1); pg_cron for scheduling.
mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: wh
Version: ${version}
Architecture: ${arch}
Maintainer: wh developers <wh@localhost>
Installed-Size: ${size}
Depends: postgresql-15, libpq5 (>= 15), libc6 (>= 2.34), libgcc-s1
Recommends: postgresql-15-cron
Suggests: postgresql-15-citus
Section: database
Priority: optional
Description: multi-tenant data warehouse inside PostgreSQL 15
 wh pulls each tenant's production PostgreSQL over dblink, a day at a time,
 into one time-partitioned table per template (tenants told apart by
 schema_name), folds past years, rebuilds from the sources after a disaster,
 and is scheduled by pg_cron. After installing: CREATE EXTENSION wh CASCADE;
 (pg_cron: shared_preload_libraries = 'pg_cron' and cron.database_name).
 Citus 13.2 is optional: citus_columnar for folded years in columnar storage,
 citus to spread tenants over several nodes (README, Past one machine).
CONTROL
find "$root" -type d -exec chmod 0755 {} +
find "$root/usr" -type f -exec chmod 0644 {} +
chmod 0755 "$root/usr/lib/postgresql/15/lib/wh.so" "$root/usr/share/wh/adopt.sh"

deb="target/wh_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "== built $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'
