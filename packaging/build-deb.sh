#!/bin/sh
# build-deb.sh OUTDIR: build rxgemmd's Debian packages (rxgemmd, librxgemm0,
# librxgemm-dev) from the dist tarball of the configured build tree this is run in, the
# way a distribution would: unpack, add packaging/debian as debian/, then
# `dpkg-buildpackage -us -uc -b`. The .debs, the .changes and build.log land in OUTDIR.
#
# DEB_BUILD_OPTIONS passes through: nocheck skips `make check` inside the package build
# (the CI runs it on its own), parallel=N builds in parallel.
set -eu

out=${1:?usage: build-deb.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)

# The version and tarball name come from the build tree's Makefile.
version=$(sed -n 's/^PACKAGE_VERSION = //p' Makefile)
[ -n "$version" ] || { echo "build-deb.sh: run me in a configured build tree" >&2; exit 1; }
tarball=rxgemmd-$version.tar.gz

make dist-gzip >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/rxgemmd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The upstream tarball under the name dpkg-source looks for, then the tree with debian/.
cp "$tarball" "$work/rxgemmd_$version.orig.tar.gz"
tar -xzf "$tarball" -C "$work"
cp -R "$srcdir/packaging/debian" "$work/rxgemmd-$version/debian"
chmod +x "$work/rxgemmd-$version/debian/rules"

echo "build-deb.sh: dpkg-buildpackage in $work/rxgemmd-$version (log: $out/build.log)"
if ! (cd "$work/rxgemmd-$version" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
	tail -n 60 "$out/build.log" >&2
	echo "build-deb.sh: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
	exit 1
fi
for f in "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo; do
	[ -e "$f" ] && mv "$f" "$out/"
done
ls "$out"
