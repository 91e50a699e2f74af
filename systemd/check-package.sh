#!/usr/bin/env bash
# Checks the Debian package against the README's install section: unpacks it with `dpkg -x`
# into a scratch root and checks every file's presence, owner and mode, the conffiles, the
# dependencies and the maintainer scripts. Usage: systemd/check-package.sh target/debian/mcpd_*.deb
set -euo pipefail

deb=${1:?usage: $0 PACKAGE.deb}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"

failures=0
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }

# path, mode, owner:group; in the package as the README's "Install on a systemd host" lists it.
expect() {
  local path=$1 mode=$2 owner=$3 found
  if [ ! -e "$root$path" ]; then
    fail "$path is missing"
    return
  fi
  found=$(stat -c '%a %U:%G' "$root$path")
  [ "$found" = "$mode $owner" ] || fail "$path is $found, expected $mode $owner"
}
# dpkg -x keeps the modes; the owners are those in the archive.
owners() { dpkg-deb -c "$deb" | awk -v p="./${1#/}" '$6 == p { print $2 }'; }

expect /usr/bin/mcpd 755 "$(id -un):$(id -gn)"
expect /usr/bin/mcpctl 755 "$(id -un):$(id -gn)"
expect /usr/lib/mcpd/bin/mcp-echo 755 "$(id -un):$(id -gn)"
for path in /usr/lib/systemd/system/mcpd.service /usr/lib/sysusers.d/mcpd.conf \
  /usr/lib/tmpfiles.d/mcpd.conf /etc/mcpd/mcpd.yaml /usr/share/doc/mcpd/examples/echo.yaml \
  /usr/share/doc/mcpd/examples/notify-reload.conf /usr/share/doc/mcpd/README.md \
  /usr/share/mcpd/schema/mcpd.schema.json /usr/share/mcpd/schema/server.schema.json; do
  expect "$path" 644 "$(id -un):$(id -gn)"
done
for path in /usr/bin/mcpd /usr/bin/mcpctl /etc/mcpd/mcpd.yaml /usr/lib/systemd/system/mcpd.service; do
  case $(owners "$path") in root/root | 0/0) ;; *) false ;; esac || fail "$path is owned by $(owners "$path") in the archive, expected root/root"
done

# The installed files are the repository's.
cmp -s "$root/usr/lib/systemd/system/mcpd.service" systemd/mcpd.service || fail "the unit differs from systemd/mcpd.service"
cmp -s "$root/usr/lib/sysusers.d/mcpd.conf" systemd/mcpd.sysusers || fail "sysusers differs from systemd/mcpd.sysusers"
cmp -s "$root/usr/lib/tmpfiles.d/mcpd.conf" systemd/mcpd.tmpfiles || fail "tmpfiles differs from systemd/mcpd.tmpfiles"
cmp -s "$root/etc/mcpd/mcpd.yaml" systemd/mcpd.yaml || fail "mcpd.yaml differs from systemd/mcpd.yaml"
for kind in daemon server; do
  file=$([ $kind = daemon ] && echo mcpd || echo server).schema.json
  "$root/usr/bin/mcpd" schema $kind | cmp -s - "$root/usr/share/mcpd/schema/$file" \
    || fail "$file differs from \`mcpd schema $kind\`"
done

# Nothing the README does not list (besides the changelog and copyright cargo-deb adds).
unexpected=$(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sort | grep -v -x -e './usr/bin/mcpd' \
  -e './usr/bin/mcpctl' -e './usr/lib/mcpd/bin/mcp-echo' -e './usr/lib/systemd/system/mcpd.service' \
  -e './usr/lib/sysusers.d/mcpd.conf' -e './usr/lib/tmpfiles.d/mcpd.conf' -e './etc/mcpd/mcpd.yaml' \
  -e './usr/share/doc/mcpd/examples/echo.yaml' -e './usr/share/doc/mcpd/examples/notify-reload.conf' \
  -e './usr/share/doc/mcpd/README.md' -e './usr/share/doc/mcpd/copyright' \
  -e './usr/share/mcpd/schema/mcpd.schema.json' -e './usr/share/mcpd/schema/server.schema.json' \
  -e './usr/share/doc/mcpd/changelog.Debian.gz' || true)
[ -z "$unexpected" ] || fail "files the README does not list: $unexpected"

# The binaries run, and are the ones just built.
"$root/usr/bin/mcpd" --version >/dev/null || fail "mcpd --version"
"$root/usr/bin/mcpctl" --version >/dev/null || fail "mcpctl --version"

# Control: conffile, maintainer, dependencies; scripts that create the user and directories.
grep -qx /etc/mcpd/mcpd.yaml "$root/DEBIAN/conffiles" || fail "/etc/mcpd/mcpd.yaml is not a conffile"
maintainer=$(dpkg-deb -f "$deb" Maintainer)
case $maintainer in
  *users.noreply.github.com* | *example* | "") fail "Maintainer is a placeholder: $maintainer" ;;
esac
dpkg-deb -f "$deb" Depends | grep -q systemd || fail "Depends lacks systemd: $(dpkg-deb -f "$deb" Depends)"
grep -q 'systemd-sysusers' "$root/DEBIAN/postinst" || fail "postinst does not run systemd-sysusers"
grep -q 'systemd-tmpfiles' "$root/DEBIAN/postinst" || fail "postinst does not run systemd-tmpfiles"
for script in postinst prerm postrm; do
  [ ! -e "$root/DEBIAN/$script" ] || [ "$(stat -c %a "$root/DEBIAN/$script")" = 755 ] ||
    fail "DEBIAN/$script is not 755"
done

if [ "$failures" -gt 0 ]; then
  printf 'package check: %d failed\n' "$failures"
  exit 1
fi
printf 'package check: %s matches the README install section\n' "$(basename "$deb")"
