#!/bin/bash
# test-deb.sh: the Debian packages, end to end. Builds rxgemmd, librxgemm0,
# librxgemm-dev and python3-rxgemm from this build tree's dist tarball (packaging/build-deb.sh), checks them
# with lintian (no error or warning), installs them with dpkg -i, checks what the
# maintainer scripts did (user and group rxgemm, socket enabled, conffile), runs jobs
# through the installed daemon and CLI as the service would (user rxgemm, socket 0660 for
# group rxgemm), a program built against librxgemm-dev, the installed Python package and
# CBLAS shim (when python3-numpy is there), then purges the packages.
#
# It changes the machine (packages, the rxgemm user), so it is not part of make check:
# quickstart.sh runs it in CI (CI=true) or when RXGEMM_TEST_DEB=1. By hand, as root, in a
# configured build tree: tests/test-deb.sh. Exits 77 without root, dpkg-buildpackage,
# debhelper or lintian, or when rxgemmd is installed already (it is not ours to replace).
# DEB_BUILD_OPTIONS passes through (quickstart.sh sets nocheck: it runs make check itself).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
marker=/var/lib/rxgemmd-test-deb.installed # this test installed the packages
skip() {
	echo "SKIP: $*"
	exit 77
}
[ "$(id -u)" -eq 0 ] || skip "dpkg -i needs root"
for tool in dpkg-buildpackage dh lintian setpriv; do
	command -v "$tool" >/dev/null 2>&1 || skip "no $tool"
done
[ -f Makefile ] || skip "run me in a configured build tree"
if dpkg-query -W -f='${Status}' rxgemmd 2>/dev/null | grep -q 'ok installed' && [ ! -e "$marker" ]; then
	skip "rxgemmd is installed on this machine and not by this test; not touching it"
fi

# lib.sh's helpers, for the installed programs.
RXGEMMD=/usr/sbin/rxgemmd
RXGEMM=/usr/bin/rxgemm
# shellcheck source=tests/lib.sh
. "$here/lib.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/rxgt-deb.XXXXXX")
TL_OUT=$T/stdout
TL_ERR=$T/stderr
pid=
purge() {
	dpkg --purge python3-rxgemm librxgemm-dev librxgemm0 rxgemmd >"$T/purge.log" 2>&1
}
# shellcheck disable=SC2317 # the EXIT trap calls it
cleanup() {
	local rc=$?
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
	if [ -e "$marker" ]; then
		purge || cat "$T/purge.log"
		rm -f "$marker"
	fi
	if [ "$rc" -ne 0 ] && [ -f "$T/rxgemmd.log" ]; then
		echo "----- rxgemmd.log -----"
		cat "$T/rxgemmd.log"
	fi
	rm -rf "$T"
	exit "$rc"
}
trap cleanup EXIT

# --- build and lint ---------------------------------------------------------------------------
start=$(date +%s)
if ! "$here/../packaging/build-deb.sh" "$T/debs" >"$T/build-deb.out" 2>&1; then
	cat "$T/build-deb.out"
	echo "FAIL: the packages do not build"
	exit 1
fi
tl_ok "dpkg-buildpackage -us -uc -b: built in $(($(date +%s) - start)) s"
for p in rxgemmd librxgemm0 librxgemm-dev python3-rxgemm; do
	if ls "$T/debs/${p}_"*.deb >/dev/null 2>&1; then
		tl_ok "package $p"
	else
		tl_fail "no package $p"
	fi
done
# lintian complains about running as root on its own line; the rest is the verdict.
if lintian --fail-on error,warning "$T/debs/"*.changes >"$T/lintian" 2>&1; then
	grep -v 'running with root privileges' "$T/lintian" | grep . &&
		tl_fail "lintian has something to say" || tl_ok "lintian: no errors or warnings"
else
	tl_fail "lintian:"
	cat "$T/lintian"
fi

# --- install ----------------------------------------------------------------------------------
touch "$marker"
if ! dpkg -i "$T/debs/librxgemm0_"*.deb "$T/debs/librxgemm-dev_"*.deb \
	"$T/debs/rxgemmd_"*.deb "$T/debs/python3-rxgemm_"*.deb >"$T/dpkg.log" 2>&1; then
	cat "$T/dpkg.log"
	echo "FAIL: dpkg -i"
	exit 1
fi
tl_ok "dpkg -i installed the four packages"

getent passwd rxgemm >/dev/null && getent group rxgemm >/dev/null &&
	tl_ok "postinst made the user and group rxgemm" || tl_fail "no user or group rxgemm"
id -nG rxgemm | grep -qw render && tl_ok "rxgemm is in the group render (GPU nodes)" ||
	tl_fail "rxgemm is not in the group render: $(id -nG rxgemm)"
[ -L /etc/systemd/system/sockets.target.wants/rxgemmd.socket ] &&
	tl_ok "postinst enabled rxgemmd.socket" || tl_fail "rxgemmd.socket is not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/rxgemmd.service ] &&
	tl_ok "rxgemmd.service is left to socket activation" ||
	tl_fail "rxgemmd.service was enabled at boot"
dpkg-query -W -f='${Conffiles}\n' rxgemmd | grep -q '/etc/rxgemmd/rxgemmd.conf' &&
	tl_ok "/etc/rxgemmd/rxgemmd.conf is a conffile" || tl_fail "the config is not a conffile"
[ -d /var/cache/rxgemmd ] && [ "$(stat -c %U /var/cache/rxgemmd)" = rxgemm ] &&
	tl_ok "postinst made /var/cache/rxgemmd for rxgemm" || tl_fail "no /var/cache/rxgemmd"
for page in 8:rxgemmd 5:rxgemmd.conf 1:rxgemm 1:rxgemm-bench 7:librxgemm-cblas; do
	if command -v man >/dev/null 2>&1; then
		man -w "${page%%:*}" "${page#*:}" >/dev/null 2>&1 && tl_ok "man ${page%%:*} ${page#*:}" ||
			tl_fail "no man page ${page#*:}(${page%%:*})"
	fi
done
[ -f /usr/share/bash-completion/completions/rxgemm ] && tl_ok "bash completion installed" ||
	tl_fail "no bash completion"
if command -v systemd-analyze >/dev/null 2>&1; then
	if systemd-analyze verify /lib/systemd/system/rxgemmd.socket \
		/lib/systemd/system/rxgemmd.service >"$T/verify" 2>&1 && [ ! -s "$T/verify" ]; then
		tl_ok "systemd-analyze verify: the installed units are clean"
	else
		tl_fail "systemd-analyze verify on the installed units:"
		cat "$T/verify"
	fi
fi

# --- run, as the service would ---------------------------------------------------------------
chmod 0755 "$T"
mkdir -p "$T/run"
chown rxgemm:rxgemm "$T/run"
sock=$T/run/rxgemmd.sock
dev=()
[ -n "${RXGEMM_TEST_DEVICE:-}" ] && dev=(--device "$RXGEMM_TEST_DEVICE")
setpriv --reuid=rxgemm --regid=rxgemm --init-groups \
	env HOME=/var/cache/rxgemmd XDG_CACHE_HOME=/var/cache/rxgemmd \
	CACHE_DIRECTORY=/var/cache/rxgemmd \
	"$RXGEMMD" --socket "$sock" --log-level debug ${dev[@]+"${dev[@]}"} \
	</dev/null >"$T/rxgemmd.log" 2>&1 &
pid=$!
for ((i = 0; i < 6000; i++)); do
	[ -S "$sock" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if [ ! -S "$sock" ]; then
	if tl_log_says_no_device "$T/rxgemmd.log"; then
		skip "the installed daemon found no OpenCL device"
	fi
	echo "FAIL: the installed rxgemmd, run as rxgemm, did not come up"
	exit 1
fi
[ "$(stat -c '%a %G' "$sock")" = "660 rxgemm" ] && tl_ok "socket mode 0660, group rxgemm" ||
	tl_fail "socket is $(stat -c '%a %U:%G' "$sock"), want 0660 group rxgemm"
tl_run "job as root" 0 "$RXGEMM" --socket "$sock" gemm -m 200 -n 150 -k 100 --check &&
	tl_ok "the installed rxgemm ran a job on the installed rxgemmd"
tl_run "status" 0 "$RXGEMM" --socket "$sock" status && tl_ok "rxgemm status"
# Shared memory under the unit's sandbox: a memfd passed to the service and mapped there.
tl_run "job through shared memory" 0 "$RXGEMM" --socket "$sock" gemm -m 300 -n 200 -k 100 \
	--shm always --check &&
	tl_ok "a job through a shared-memory buffer runs on the sandboxed service"
tl_run "installed rxgemm-bench" 0 /usr/bin/rxgemm-bench --sizes 96 --repeat 1 --warmup 0 &&
	tl_expect_output "installed rxgemm-bench" '^ +96 +96 +96 ' &&
	tl_ok "the installed rxgemm-bench times a GEMM"
tl_run "job in group rxgemm" 0 setpriv --reuid=nobody --regid=rxgemm --clear-groups \
	"$RXGEMM" --socket "$sock" gemm -m 64 -n 64 -k 64 --check &&
	tl_ok "a user in the group rxgemm may use the daemon"
if tl_run "job outside the group" 3 setpriv --reuid=nobody --regid=nogroup --clear-groups \
	"$RXGEMM" --socket "$sock" gemm -m 8 -n 8 -k 8; then
	tl_ok "a user outside the group rxgemm may not"
fi

# A program built against librxgemm-dev with pkg-config.
cat >"$T/tiny.c" <<'C'
#include <stdio.h>
#include <rxgemm.h>

int main(int argc, char **argv)
{
	float a[6] = { 1, 2, 3, 4, 5, 6 }, b[6] = { 1, 0, 0, 1, 1, 1 }, c[4];
	struct rxg_gemm_args g = { .layout = RXG_ROW_MAJOR, .m = 2, .n = 2, .k = 3,
				   .alpha = 1.0f, .a = a, .b = b, .c = c };
	rxg_client *cl;
	int rc;

	if (argc != 2 || (rc = rxg_connect(argv[1], "tiny", &cl)) != RXG_OK)
		return 2;
	rc = rxg_gemm(cl, &g, NULL);
	rxg_close(cl);
	printf("%g %g %g %g\n", c[0], c[1], c[2], c[3]);
	return rc == RXG_OK && c[0] == 4 && c[1] == 5 && c[2] == 10 && c[3] == 11 ? 0 : 1;
}
C
# shellcheck disable=SC2046 # pkg-config's flags are words
if tl_run "build against librxgemm-dev" 0 cc -o "$T/tiny" "$T/tiny.c" \
	$(pkg-config --cflags --libs rxgemm); then
	tl_run "program against librxgemm" 0 "$T/tiny" "$sock" &&
		tl_ok "a program built with pkg-config rxgemm ran a job"
fi

# The Python package and the CBLAS shim, as installed (they need Debian's numpy).
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	cat >"$T/py.py" <<'PY'
import sys
import numpy as np
import rxgemm
assert rxgemm.__file__.startswith("/usr/lib/python3/dist-packages/"), rxgemm.__file__
a = np.arange(12, dtype=np.float32).reshape(3, 4)
b = np.ones((4, 2), np.float32)
with rxgemm.Client(sys.argv[1]) as c:
    assert np.array_equal(c.matmul(a, b), a @ b)
PY
	tl_run "installed python3-rxgemm" 0 env -u PYTHONPATH /usr/bin/python3 "$T/py.py" "$sock" &&
		tl_ok "python3-rxgemm: import rxgemm and a matmul on the installed daemon"
	shim=$(ls /usr/lib/*/rxgemm/librxgemm-cblas.so 2>/dev/null | head -n 1)
	if [ -n "$shim" ] && tl_run "installed shim" 0 env LD_PRELOAD="$shim" RXGEMM_SOCKET="$sock" \
		RXGEMM_CBLAS_VERBOSE=1 /usr/bin/python3 -c \
		'import numpy as np; a = np.ones((300, 300), np.float32); assert (a @ a == 300).all()'; then
		tl_expect_output "installed shim" 'on the daemon' &&
			tl_ok "librxgemm-cblas.so from librxgemm0 sends numpy's sgemm to the daemon"
	elif [ -z "$shim" ]; then
		tl_fail "librxgemm0 has no rxgemm/librxgemm-cblas.so"
	fi
fi
for doc in NAS.md PROTOCOL.md PERFORMANCE.md; do
	[ -f "/usr/share/doc/rxgemmd/$doc" ] && tl_ok "rxgemmd ships $doc" ||
		tl_fail "/usr/share/doc/rxgemmd/$doc is missing"
done

tl_daemon_stop "$pid" TERM
pid=
[ "$TL_STATUS" -eq 0 ] && tl_ok "the installed daemon stopped cleanly" ||
	tl_fail "the installed daemon exited $TL_STATUS after SIGTERM"

# --- purge ------------------------------------------------------------------------------------
if purge; then
	rm -f "$marker"
	[ ! -e /usr/sbin/rxgemmd ] && [ ! -e /etc/systemd/system/sockets.target.wants/rxgemmd.socket ] &&
		[ ! -e /etc/rxgemmd/rxgemmd.conf ] && [ ! -e /var/cache/rxgemmd ] &&
		tl_ok "dpkg --purge removed the programs, config, cache and socket enablement" ||
		tl_fail "dpkg --purge left files behind"
else
	tl_fail "dpkg --purge"
	cat "$T/purge.log"
fi
tl_finish
