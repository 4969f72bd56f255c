#!/bin/sh
# build.sh ARCH VERSION BINARY OUTDIR: the Debian package of one
# architecture, OUTDIR/gatehouse_DEBVERSION_ARCH.deb, from a static
# gatehouse binary built for it (make deb). Debian's own tools only:
# dpkg-deb --root-owner-group, so no fakeroot is needed. Timestamps come
# from SOURCE_DATE_EPOCH (the last commit), so the package is reproducible.
#
# VERSION is the git version (git describe); the Debian version is derived:
#   v1.2.3            -> 1.2.3
#   v1.2.3-4-gabc1234 -> 1.2.3+4.gabc1234   (after 1.2.3, before 1.2.4)
#   abc1234 (no tag)  -> 0~gitYYYYMMDDhhmmss.abc1234   (ordered by commit time, before any release)
# with -dirty as +dirty / .dirty. DEB_VERSION overrides it.
set -eu

arch=$1 version=$2 bin=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
epoch=${SOURCE_DATE_EPOCH:-0}

if [ -z "${DEB_VERSION:-}" ]; then
	v=$(printf '%s' "${version#v}" | sed 's/-/+/; s/-/./g')
	if ! printf '%s' "$version" | grep -Eq '^v?[0-9]+(\.[0-9]+)+([-+~.].*)?$'; then
		# Not a release tag: an abbreviated commit name (git describe --always).
		v="0~git$(date -u -d "@$epoch" +%Y%m%d%H%M%S).$v"
	fi
	DEB_VERSION=$v
fi
dpkg --validate-version "$DEB_VERSION"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"  # the "./" of the archive
doc=$stage/usr/share/doc/gatehouse

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/systemd/system" \
	"$stage/usr/lib/sysusers.d" "$stage/usr/share/man/man1" "$doc/examples"
# Owned by root here; postinst gives them to the group or user gatehouse.
install -d -m 0750 "$stage/etc/gatehouse" "$stage/etc/gatehouse/tls" "$stage/var/lib/gatehouse"

install -m 0755 "$bin" "$stage/usr/bin/gatehouse"
# The unit as shipped names /usr/local/bin (release archives); Debian's is /usr/bin.
sed 's#/usr/local/bin/gatehouse#/usr/bin/gatehouse#g' "$top/deploy/systemd/gatehouse.service" \
	> "$stage/usr/lib/systemd/system/gatehouse.service"
chmod 0644 "$stage/usr/lib/systemd/system/gatehouse.service"
install -m 0644 "$top/deploy/systemd/gatehouse.sysusers" "$stage/usr/lib/sysusers.d/gatehouse.conf"
install -m 0640 "$here/gatehouse.yaml" "$stage/etc/gatehouse/gatehouse.yaml"

gzip -9n < "$here/gatehouse.1" > "$stage/usr/share/man/man1/gatehouse.1.gz"
chmod 0644 "$stage/usr/share/man/man1/gatehouse.1.gz"
install -m 0644 "$top/configs/examples/"*.yaml "$doc/examples/"
for f in README.md docs/deploy.md; do
	gzip -9n < "$top/$f" > "$doc/$(basename "$f").gz"
done
chmod 0644 "$doc"/*.gz

# A native package's changelog (Debian policy 12.7): one entry for this build.
{
	printf 'gatehouse (%s) unstable; urgency=medium\n\n' "$DEB_VERSION"
	printf '  * Built from git %s; the changes are in the git history.\n\n' "$version"
	printf ' -- gatehouse maintainers <gatehouse-pbx@users.noreply.github.com>  %s\n' \
		"$(date -u -R -d "@$epoch")"
} | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# copyright: gatehouse's own notice, then every module linked into the binary.
modcache=$(go env GOMODCACHE)
{
	cat "$here/copyright"
	printf '\n\nGo standard library %s\n\n' "$(go version "$bin" | awk '{print $2}')"
	cat "$(go env GOROOT)/LICENSE"
	go version -m "$bin" | awk '$1 == "dep" { print $2, $3 }' | while read -r path ver; do
		# The module cache spells capitals as !lower (golang.org/x/mod/module).
		dir=$modcache/$(printf '%s' "$path" | sed 's/[A-Z]/!&/g' | tr 'A-Z' 'a-z')@$ver
		lic=$(ls "$dir"/LICENSE* "$dir"/COPYING* 2>/dev/null | head -n 1 || true)
		if [ -z "$lic" ]; then
			echo "build.sh: no license file for $path $ver in $dir" >&2
			exit 1
		fi
		printf '\n\n%s %s\n\n' "$path" "$ver"
		if grep -q 'TERMS AND CONDITIONS FOR USE, REPRODUCTION' "$lic" && grep -q 'Version 2.0' "$lic"; then
			# Debian policy 12.5: the full text is in common-licenses, not here.
			echo "Apache License, Version 2.0: see /usr/share/common-licenses/Apache-2.0."
			[ ! -f "$dir/NOTICE" ] || { printf '\nNOTICE:\n'; cat "$dir/NOTICE"; }
		else
			cat "$lic"
		fi
	done
} > "$doc/copyright"
chmod 0644 "$doc/copyright"

for f in postinst prerm postrm; do
	install -m 0755 "$here/$f" "$stage/DEBIAN/$f"
done
echo /etc/gatehouse/gatehouse.yaml > "$stage/DEBIAN/conffiles"
if [ -f "$here/lintian-overrides" ]; then
	install -d -m 0755 "$stage/usr/share/lintian/overrides"
	install -m 0644 "$here/lintian-overrides" "$stage/usr/share/lintian/overrides/gatehouse"
fi
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
	> "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	"$here/control.in" > "$stage/DEBIAN/control"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

find "$stage" -exec touch -h -d "@$epoch" {} +
mkdir -p "$out"
deb=$out/gatehouse_${DEB_VERSION}_$arch.deb
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
