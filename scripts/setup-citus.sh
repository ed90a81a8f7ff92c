#!/usr/bin/env bash
# Citus 13.2.2 (the newest release for PostgreSQL 15) built from the source kept beside the
# project, ../shared/vendor/citus (no package registry here has it for PostgreSQL 15), and
# installed into Debian's PostgreSQL 15: citus.so, citus_columnar.so and their extension files.
# Nothing is downloaded but Debian's build dependencies. Skipped when that release is installed.
#   scripts/setup-citus.sh                 WH_CITUS_SRC=<dir> to take the source from elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup-citus]\033[0m %s\n' "$*"; }

VERSION=13.2.2
SRC=${WH_CITUS_SRC:-$(cd .. && pwd)/shared/vendor/citus}
TARBALL=$SRC/citus-$VERSION.tar.gz
SHA256=c8fc76dc8294636a52b1a0dd75a20d8b4a36937df6443e30ca84d8d0464a6bb9
PG_CONFIG=/usr/bin/pg_config
LIB=$($PG_CONFIG --pkglibdir)
EXT=$($PG_CONFIG --sharedir)/extension

# 1. Already there: this release's libraries and control files (its version string is in citus.so).
if [ -f "$LIB/citus.so" ] && [ -f "$LIB/citus_columnar.so" ] && [ -f "$EXT/citus_columnar.control" ] \
    && grep -qs "default_version = '13.2-1'" "$EXT/citus.control" && grep -aq "Citus $VERSION" "$LIB/citus.so"; then
    say "Citus $VERSION: present"
    exit 0
fi

# 2. The source, as recorded in its README (sha256 of the git archive of tag v13.2.2).
[ -f "$TARBALL" ] || { echo "no $TARBALL: the shared folder must sit beside the clone (or set WH_CITUS_SRC)" >&2; exit 1; }
echo "$SHA256  $TARBALL" | sha256sum -c --quiet -

# 3. Debian's build dependencies (lz4/zstd compression, GSSAPI headers PostgreSQL's include).
PKGS=(postgresql-server-dev-15 libzstd-dev liblz4-dev libkrb5-dev libicu-dev libssl-dev libxslt1-dev
      libreadline-dev uuid-dev make gcc patch)
missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 4. Build in a writable copy (Citus writes generated SQL into its source tree), with the one-line
#    patch PostgreSQL 15.20 needs; no libcurl (no statistics sent anywhere).
work=$(mktemp -d /tmp/wh-citus-build.XXXX)
trap 'rm -rf "$work"' EXIT
tar -xzf "$TARBALL" -C "$work"
cd "$work/citus-$VERSION"
patch -p1 --forward --quiet < "$SRC/pg15-have_createdb_privilege.patch"
say "building Citus $VERSION (about 3-4 minutes on 2 cores)"
./configure --without-libcurl PG_CONFIG=$PG_CONFIG > "$work/configure.log" 2>&1 \
    || { tail -30 "$work/configure.log" >&2; exit 1; }
make -j"$(nproc)" > "$work/make.log" 2>&1 || { tail -40 "$work/make.log" >&2; exit 1; }
make install > "$work/install.log" 2>&1 || { tail -40 "$work/install.log" >&2; exit 1; }
test -f "$LIB/citus.so" -a -f "$LIB/citus_columnar.so" -a -f "$EXT/citus_columnar.control"
say "Citus $VERSION installed into $LIB"
