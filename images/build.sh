#!/usr/bin/env bash
# Build the Vouch workload images (vouch/<name>:dev) from images/<name>/Dockerfile.
#
#   images/build.sh            build every image
#   images/build.sh wc jsonx   build only those
#
# The workload binaries (crates vouch-workloads and vouch-inference, in one
# cargo invocation) are built statically (glibc, +crt-static) into
# target/static, then each image is built from a throw-away context holding
# only its Dockerfile and the one binary it COPYs. Every image is FROM scratch,
# so nothing is pulled and no registry is needed. Safe to re-run: cargo and the
# docker layer cache make a no-change rebuild fast and keep the image ids.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="x86_64-unknown-linux-gnu"
bindir="$repo/target/static/$target/release"

die() { echo "images/build.sh: $*" >&2; exit 1; }

# ---- which images
all_images=()
for dockerfile in "$here"/*/Dockerfile; do
  all_images+=("$(basename "$(dirname "$dockerfile")")")
done
[ "${#all_images[@]}" -gt 0 ] || die "no images/<name>/Dockerfile found under $here"

if [ "$#" -gt 0 ]; then
  images=()
  for name in "$@"; do
    name="${name#vouch/}"
    name="${name%:dev}"
    [ -f "$here/$name/Dockerfile" ] \
      || die "unknown image '$name' (known: ${all_images[*]})"
    images+=("$name")
  done
else
  images=("${all_images[@]}")
fi

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 </dev/null || die "cannot reach the docker daemon (docker info failed)"

# ---- static binaries
# Debug info is dropped and symbols stripped for these builds only (this
# target dir is private to this script), which keeps the images small.
echo "building static workload binaries (target/static/$target/release) ..."
(
  cd "$repo"
  CARGO_TARGET_DIR="$repo/target/static" \
  RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --target "$target" -p vouch-workloads -p vouch-inference </dev/null
)

# ---- images
ctx_root="$(mktemp -d "${TMPDIR:-/tmp}/vouch-images.XXXXXX")"
trap 'rm -rf "$ctx_root"' EXIT

for name in "${images[@]}"; do
  dockerfile="$here/$name/Dockerfile"
  bin="$(awk 'toupper($1) == "COPY" { print $2; exit }' "$dockerfile")"
  [ -n "$bin" ] || die "$dockerfile has no COPY line"
  [ -x "$bindir/$bin" ] || die "$dockerfile copies '$bin', but $bindir/$bin was not built"
  if command -v readelf >/dev/null 2>&1 \
     && readelf -l "$bindir/$bin" 2>/dev/null | grep -q 'program interpreter'; then
    die "$bindir/$bin is dynamically linked; a FROM scratch image needs a static binary"
  fi

  tag="vouch/$name:dev"
  echo "building image $tag ..."
  ctx="$ctx_root/$name"
  mkdir -p "$ctx"
  cp -p "$dockerfile" "$ctx/Dockerfile"
  cp -p "$bindir/$bin" "$ctx/$bin"
  docker build -q -t "$tag" "$ctx" </dev/null >/dev/null
done

# ---- summary
echo
printf '%-28s %-73s %s\n' TAG "IMAGE ID" SIZE
for name in "${images[@]}"; do
  tag="vouch/$name:dev"
  id="$(docker image inspect -f '{{.Id}}' "$tag")"
  size="$(docker image inspect -f '{{.Size}}' "$tag")"
  printf '%-28s %-73s %s\n' "$tag" "$id" "$size"
done
