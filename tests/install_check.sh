#!/bin/sh
# Installs the build tree into a scratch DESTDIR and checks that every installed piece
# lands where a packager expects it (GNUInstallDirs), and that the installed agent finds
# its plugins and accepts the shipped example config's syntax.
set -eu
build=$1
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
DESTDIR=$dest cmake --install "$build" >/dev/null
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
fail=0
check() {
    if [ -e "$dest$1" ]; then echo "ok   $1"; else echo "MISSING $1"; fail=1; fi
}
check "$prefix/bin/redis-creds-agent"
check "$prefix/bin/redis-creds"
plugin=$(find "$dest$prefix" -path '*/redis-creds/plugins/file.so' | head -n 1)
[ -n "$plugin" ] && echo "ok   ${plugin#"$dest"}" || { echo "MISSING plugins/file.so"; fail=1; }
check "$prefix/lib/systemd/system/redis-creds-agent.service"
check "$prefix/lib/tmpfiles.d/redis-creds.conf"
check "$prefix/lib/sysusers.d/redis-creds.conf"
check "$prefix/lib/systemd/catalog/redis-creds.catalog"
check "$prefix/share/doc/redis-creds/agent.conf.example"
# The agent's built-in plugin_dir is where the plugins were installed.
builtin=$(strings "$dest$prefix/bin/redis-creds-agent" | grep -m1 '/redis-creds/plugins$' || true)
[ "$dest$builtin/file.so" = "$plugin" ] && echo "ok   built-in plugin_dir $builtin" ||
    { echo "built-in plugin_dir '$builtin' is not where file.so was installed"; fail=1; }
[ $fail -eq 0 ] && echo "install check passed"
exit $fail
