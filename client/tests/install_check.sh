#!/bin/sh
# Installs the build into a scratch prefix and builds the C examples against it with
# pkg-config only, as a user of the installed library would:
#   install_check.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
tmp=$(mktemp -d /tmp/rc-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(dirname "$(find "$tmp/prefix" -name redis-creds.pc | head -n 1)")
export PKG_CONFIG_PATH="$pc"
test -f "$tmp/prefix/include/redis_creds.h"
cc -Wall -Werror "$src/client/examples/event_loop.c" \
    $(pkg-config --cflags --libs redis-creds) -o "$tmp/event_loop"
cc -Wall -Werror "$src/client/examples/event_loop.c" \
    $(pkg-config --cflags redis-creds) "$pc/../libredis-creds.a" $(pkg-config --static --libs jansson) -pthread \
    -o "$tmp/event_loop_static"
if pkg-config --exists redis-creds-hiredis; then
    cc -Wall -Werror "$src/client/examples/hiredis_counter.c" \
        $(pkg-config --cflags --libs redis-creds-hiredis) -o "$tmp/counter"
    cc -Wall -Wextra -Werror "$src/client/examples/hiredis_subscriber.c" \
        $(pkg-config --cflags --libs redis-creds-hiredis) -o "$tmp/subscriber"
fi
# the installed shared library is found through the prefix, not the build tree
mkdir "$tmp/run"
out=$(LD_LIBRARY_PATH="$pc/.." "$tmp/event_loop" cache "$tmp/run" 1 </dev/null & pid=$!; sleep 0.3; kill $pid 2>/dev/null; wait $pid 2>/dev/null || true)
case $out in
*"not published yet"*) ;;
*) echo "event_loop printed: $out" >&2; exit 1 ;;
esac
"$tmp/event_loop_static" cache "$tmp/run" 1 </dev/null >/dev/null & pid=$!
sleep 0.2
kill "$pid"
echo "1 passed, 0 failed: installed library, headers and pkg-config files work"
