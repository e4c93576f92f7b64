#!/usr/bin/env bash
# Build the Debian packages of redis-creds, on Debian 12, as dpkg-buildpackage does: the
# .deb files land in the parent of the source tree (../).
#
#   ./scripts/package.sh              install the build dependencies, build, run lintian
#   ./scripts/package.sh --no-lintian build only
#
# Packages: redis-creds (agent, CLI, plugins, unit, sysusers, tmpfiles, catalog, docs),
# libredis-creds0, libredis-creds-hiredis0, libredis-creds-dev, python3-redis-creds,
# redis-creds-plugin-dev (the plugin SDK).
# DEB_BUILD_OPTIONS is passed on (e.g. DEB_BUILD_OPTIONS=nocheck skips the unit tests).
# Exit status: 0 when the packages were built (and lintian found no error or warning that
# debian/*.lintian-overrides does not explain), 1 otherwise, 2 for a usage error.
set -euo pipefail

RC_SCRIPT_NAME=package.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib/deps.sh
. "$root/scripts/lib/deps.sh"

lintian=1
while (($# > 0)); do
    case $1 in
    --no-lintian) lintian=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        rc_log "unknown argument: $1 (see --help)"
        exit 2
        ;;
    esac
    shift
done

umask 022
rc_ensure_packages
if ! dpkg-checkbuilddeps; then
    rc_log "build dependencies missing (debian/control's Build-Depends); scripts/lib/deps.sh lists them"
    exit 1
fi
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
dpkg-buildpackage -us -uc -b
changes="$root/../redis-creds_${version}_${arch}.changes"
if ((lintian)); then
    # --fail-on warning: every warning is either fixed or overridden with its reason.
    lintian --fail-on error,warning --suppress-tags-from-file /dev/null "$changes"
fi
printf 'package.sh: built %s\n' "$(sed -n '/^Files:/,$p' "$changes" | awk 'NF==5 && $5 ~ /\.deb$/ {print $5}' | tr '\n' ' ')"
