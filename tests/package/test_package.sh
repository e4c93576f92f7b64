#!/usr/bin/env bash
# The Debian packages, built from this tree and tried in a throwaway root.
#
#   tests/package/test_package.sh SOURCE_DIR
#
# 1. copies the tree (tracked and untracked-but-not-ignored files) to a scratch directory
#    and builds it with scripts/package.sh (lintian included; DEB_BUILD_OPTIONS=nocheck,
#    since ctest runs the unit tests anyway);
# 2. checks each package's contents with dpkg-deb -c;
# 3. in a private mount namespace, over an overlay of / with a tmpfs upper layer (nothing
#    reaches the real system), installs the packages with dpkg, installs them again (an
#    upgrade to the same version rebuilt), removes and purges them, checking the user,
#    the directories, the unit's enablement and what a purge leaves.
# Needs root (mount namespaces, dpkg). Prints "N passed, N failed" last.
set -uo pipefail

src=$(cd "${1:?usage: test_package.sh SOURCE_DIR}" && pwd)
if ((EUID != 0)); then
    echo "test_package: skipped: needs root (dpkg, mount namespaces)"
    exit 0
fi
work=$(mktemp -d /var/tmp/rc-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
bad() { printf 'FAIL %s\n' "$1"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}
finish() {
    printf '%d passed, %d failed\n' "$passed" "$failed"
    ((failed == 0))
    exit
}

# 1. build from a copy, so the tree under test is not touched (dpkg-buildpackage writes
#    debian/ and obj-*/ into the source and the packages into its parent).
mkdir -p "$work/src"
(cd "$src" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$work/src" -xf -
if (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" ./scripts/package.sh) >"$work/build.log" 2>&1; then
    ok "scripts/package.sh builds the packages and lintian passes"
else
    tail -n 40 "$work/build.log"
    bad "scripts/package.sh builds the packages and lintian passes"
    finish
fi
version=$(cd "$work/src" && dpkg-parsechangelog -S Version)
mapfile -t debs < <(ls "$work"/*.deb | grep -v -- '-dbgsym_')

# 2. contents
deb_of() { ls "$work/$1_${version}_"*.deb; }
has() { # has PACKAGE PATH-REGEX
    dpkg-deb -c "$(deb_of "$1")" | awk '{print $6}' | grep -qE "^\./$2\$"
}
for p in \
    "redis-creds usr/bin/redis-creds-agent" "redis-creds usr/bin/redis-creds" \
    "redis-creds usr/lib/[^/]+/redis-creds/plugins/(file|vault|azure)\.so" \
    "redis-creds lib/systemd/system/redis-creds-agent\.service" \
    "redis-creds usr/lib/sysusers\.d/redis-creds\.conf" \
    "redis-creds usr/lib/tmpfiles\.d/redis-creds\.conf" \
    "redis-creds usr/lib/systemd/catalog/redis-creds\.catalog" \
    "redis-creds usr/share/doc/redis-creds/operations\.md\.gz" \
    "redis-creds usr/share/doc/redis-creds/agent\.conf\.example(\.gz)?" \
    "libredis-creds0 usr/lib/[^/]+/libredis-creds\.so\.0" \
    "libredis-creds-hiredis0 usr/lib/[^/]+/libredis-creds-hiredis\.so\.0" \
    "libredis-creds-dev usr/include/redis_creds\.h" \
    "libredis-creds-dev usr/lib/[^/]+/pkgconfig/redis-creds\.pc" \
    "python3-redis-creds usr/lib/python3/dist-packages/redis_creds/__init__\.py" \
    "redis-creds-plugin-dev usr/lib/[^/]+/pkgconfig/redis-creds-plugin\.pc" \
    "redis-creds-plugin-dev usr/share/redis-creds-plugin/plugin\.map" \
    "redis-creds-plugin-dev usr/share/doc/redis-creds-plugin-dev/examples/plugin-systemd-credentials/systemd_credentials\.c"; do
    read -r pkg path <<<"$p"
    check "$pkg has /$path" has "$pkg" "$path"
done
check "libredis-creds0 ships a symbols file" sh -c "dpkg-deb -I '$(deb_of libredis-creds0)' symbols"
check "redis-creds-plugin-dev has /usr/include/redis-creds-plugin/plugin.h" \
    has redis-creds-plugin-dev "usr/include/redis-creds-plugin/plugin\.h"
check "the plugin SDK's only header is plugin.h (ABI 5: no host header)" \
    sh -c "test \"\$(dpkg-deb -c '$(deb_of redis-creds-plugin-dev)' | grep -cE 'usr/include/.*\.h\$')\" = 1"
check "the plugin SDK is headers, a .pc and a version script: no library" \
    sh -c "! dpkg-deb -c '$(deb_of redis-creds-plugin-dev)' | grep -E '\.(so|a)(\.|\$)'"
check "the agent has no .so of its own in /usr/lib (only plugins)" \
    sh -c "! dpkg-deb -c '$(deb_of redis-creds)' | grep -E 'usr/lib/[^/]+/lib[^/]*\.so'"

# 3. a throwaway root: everything below runs in a private mount namespace.

cat >"$work/inroot.sh" <<'INROOT'
set -u
r=$1; shift
export DEBIAN_FRONTEND=noninteractive
inr() { chroot "$r" "$@"; }
say() { printf '%s %s\n' "$1" "$2"; }
t() { local what=$1; shift; if "$@" >/dev/null 2>&1; then say ok "$what"; else say FAIL "$what"; fi; }
names="redis-creds libredis-creds0 libredis-creds-hiredis0 libredis-creds-dev python3-redis-creds redis-creds-plugin-dev"
t "the packages install" inr sh -c 'dpkg -i /pkgs/*.deb'
t "the redis-creds user exists" inr getent passwd redis-creds
t "the redis-creds group exists" inr getent group redis-creds
t "/run/redis-creds is made by tmpfiles (0750 redis-creds)" \
    sh -c "[ \"\$(chroot $r stat -c '%a %U %G' /run/redis-creds)\" = '750 redis-creds redis-creds' ]"
t "the unit is enabled" test -L "$r/etc/systemd/system/multi-user.target.wants/redis-creds-agent.service"
t "/etc/redis-creds exists" test -d "$r/etc/redis-creds"
t "/etc/redis-creds/secrets is the agent's, 0700" \
    sh -c "[ \"\$(chroot $r stat -c '%a %U' /etc/redis-creds/secrets)\" = '700 redis-creds' ]"
t "the installed agent accepts the shipped example config (--check-config)" inr sh -c 'zcat -f /usr/share/doc/redis-creds/agent.conf.example* >/etc/redis-creds/agent.conf && chmod 0640 /etc/redis-creds/agent.conf && redis-creds-agent -c /etc/redis-creds/agent.conf --check-config'
t "the Python module imports" inr /usr/bin/python3 -c "import redis_creds"
t "the C library links through pkg-config" sh -c "printf '#include <redis_creds.h>\nint main(void){return rc_open(0,0,0)==0;}\n' > $r/tmp/t.c && chroot $r sh -c 'cc /tmp/t.c \$(pkg-config --cflags --libs redis-creds) -o /tmp/t'"
t "the example plugin builds against the installed SDK, into the agent's plugin dir" inr sh -c 'cp -r /usr/share/doc/redis-creds-plugin-dev/examples/plugin-systemd-credentials /tmp/ex && cmake -S /tmp/ex -B /tmp/ex/b -DCMAKE_C_FLAGS=-Werror && cmake --build /tmp/ex/b && cmake --install /tmp/ex/b && test -f "$(pkg-config --variable=plugindir redis-creds-plugin)/systemd.so" && test "$(nm -D --defined-only --format=posix /tmp/ex/b/systemd.so | cut -d" " -f1)" = redis_creds_plugin'
t "the installed agent loads it (--check-config of a systemd-credentials source)" inr sh -c 'printf "agent = { runtime_dir = \"/tmp/rt\"; state_dir = \"/tmp/st\"; };\nsources = ( { name = \"sd\"; type = \"systemd-credentials\"; } );\ncredentials = ( { name = \"c\"; source = \"sd\"; credential = \"redis\"; redis = { endpoints = [ \"127.0.0.1:6379\" ]; }; } );\n" >/tmp/sd.conf && redis-creds-agent -c /tmp/sd.conf --check-config'
rm -f "$r$(chroot "$r" pkg-config --variable=plugindir redis-creds-plugin 2>/dev/null)/systemd.so"
mkdir -p "$r/var/lib/redis-creds" && echo state > "$r/var/lib/redis-creds/host.key"
t "the same version installs again (upgrade)" inr sh -c 'dpkg -i /pkgs/*.deb'
t "the admin's config is kept across the upgrade" test -f "$r/etc/redis-creds/agent.conf"
t "the packages are removed" inr dpkg -r $names
t "remove: the agent is gone" test ! -e "$r/usr/bin/redis-creds-agent"
t "remove: the admin's config stays" test -f "$r/etc/redis-creds/agent.conf"
t "the packages are purged" inr dpkg -P $names
t "purge: /var/lib/redis-creds is gone" test ! -e "$r/var/lib/redis-creds"
t "purge: the unit's enablement is gone" test ! -e "$r/etc/systemd/system/multi-user.target.wants/redis-creds-agent.service"
t "purge: the admin's config stays" test -f "$r/etc/redis-creds/agent.conf"
t "purge: the redis-creds user stays (policy)" inr getent passwd redis-creds
t "purge: no file of the packages is left in /usr" sh -c "! find $r/usr -path '*redis*creds*' -newer $r/pkgs | grep ."
echo "done"
INROOT
cat >"$work/ns.sh" <<'NS'
set -eu
w=$1
mount -t tmpfs tmpfs "$w/ovl"
mkdir -p "$w/ovl/upper" "$w/ovl/work" "$w/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/ovl/upper,workdir=$w/ovl/work" "$w/root"
mount -t proc proc "$w/root/proc"
mount --rbind /dev "$w/root/dev"
mount -t tmpfs tmpfs "$w/root/run"
mount -t tmpfs tmpfs "$w/root/tmp"
mkdir -p "$w/root/pkgs"
mount --bind "$w/debs" "$w/root/pkgs"
bash "$w/inroot.sh" "$w/root"
NS
mkdir -p "$work/ovl" "$work/debs"
cp "${debs[@]}" "$work/debs/"
if ! out=$(unshare -m --propagation private bash "$work/ns.sh" "$work" 2>&1); then
    printf '%s\n' "$out" | tail -n 20
fi
while read -r word what; do
    case $word in
    ok) ok "$what" ;;
    FAIL) bad "$what" ;;
    esac
done <<<"$out"
# The throwaway root's script ends with "done"; without it, some checks never ran.
grep -qx done <<<"$out" || bad "the checks in the throwaway root all ran"
finish
