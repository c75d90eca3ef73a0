#!/usr/bin/env bash
# Build the Vouch service images from docker/<name>.Dockerfile:
#
#   docker/build.sh                 vouch/node:dev and vouch/verifier:dev
#   docker/build.sh node            only vouch/node:dev (or: verifier)
#
# The binaries (packages vouch-node and vouch-verifier, in one cargo invocation) are built
# statically (glibc, +crt-static) into target/static with the same flags as
# images/build.sh, so the two scripts share compiled dependencies. Each image is then
# built from a throw-away context holding only its Dockerfile, its binary and the empty
# directories it copies (the image has no shell to create them). Every image is FROM
# scratch: nothing is pulled and no registry is needed. Safe to re-run: cargo and the
# Docker layer cache make a no-change rebuild fast and keep the image ids.
#
# Reads nothing from standard input (CI runs it with </dev/null).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

die() { echo "docker/build.sh: $*" >&2; exit 1; }
step() { printf '[%4ss] %s\n' "$SECONDS" "$*"; }

usage() { sed -n '2,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

# ---- which images: short name -> binary (= cargo package = binary name)
declare -A binary=([node]=vouch-node [verifier]=vouch-verifier)
all_images=(node verifier)

images=()
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
  esac
  name="${arg#vouch/}"
  name="${name%:dev}"
  [ -n "${binary[$name]:-}" ] || die "unknown image '$arg' (known: ${all_images[*]})"
  images+=("$name")
done
[ "${#images[@]}" -gt 0 ] || images=("${all_images[@]}")
for name in "${images[@]}"; do
  [ -f "$here/$name.Dockerfile" ] || die "$here/$name.Dockerfile is missing"
done

# ---- tools and daemon, before the (possibly long) compile
command -v docker >/dev/null 2>&1 \
  || die "docker is not installed (the docker CLI and a running Docker Engine are needed)"
# `timeout`, where there is one, keeps an unresponsive tcp:// DOCKER_HOST from hanging CI.
bounded() { if command -v timeout >/dev/null 2>&1; then timeout 60 "$@"; else "$@"; fi; }
if ! api="$(bounded docker version --format '{{.Server.APIVersion}}' 2>&1 </dev/null)"; then
  reason="$(printf '%s\n' "$api" | grep -v '^[[:space:]]*$' | tail -n 1 || true)"
  case "$reason" in
    *"ermission denied"*)
      hint="this user may not open the daemon's socket: run as a member of its group (ls -l /var/run/docker.sock) or as root" ;;
    "")
      hint="docker version gave no answer within 60 s (DOCKER_HOST=${DOCKER_HOST:-unset})" ;;
    *)
      hint="start the daemon (e.g. systemctl start docker), or point DOCKER_HOST (or 'docker context use') at a running one" ;;
  esac
  die "cannot reach the Docker daemon: ${reason:-no answer}
  $hint"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not installed (Rust 1.89 or newer is needed)"
target="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
case "$target" in
  *-linux-gnu) ;;
  "") die "rustc is not installed or did not report its host target" ;;
  *) die "the static build needs a Linux glibc host (host target is '$target'); see the
  multi-stage build described at the top of docker/node.Dockerfile" ;;
esac
bindir="$repo/target/static/$target/release"
step "Docker API $api, target $target"

# ---- static binaries
# The same environment as images/build.sh: any difference (RUSTFLAGS, profile overrides)
# would make cargo rebuild the shared dependencies for each script in turn.
packages=()
bins=()
names=()
for name in "${images[@]}"; do
  packages+=(-p "${binary[$name]}")
  bins+=(--bin "${binary[$name]}")
  names+=("${binary[$name]}")
done
step "building static ${names[*]} into target/static/$target/release ..."
(
  cd "$repo"
  CARGO_TARGET_DIR="$repo/target/static" \
  RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --target "$target" "${packages[@]}" "${bins[@]}" </dev/null
) || die "cargo build failed (see above)"

# ---- images
ctx_root="$(mktemp -d "${TMPDIR:-/tmp}/vouch-docker.XXXXXX")"
trap 'rm -rf "$ctx_root"' EXIT

for name in "${images[@]}"; do
  bin="${binary[$name]}"
  [ -x "$bindir/$bin" ] || die "$bindir/$bin was not built"
  if command -v readelf >/dev/null 2>&1 \
     && readelf -l "$bindir/$bin" 2>/dev/null | grep -q 'program interpreter'; then
    die "$bindir/$bin is dynamically linked; a FROM scratch image needs a static binary"
  fi

  tag="vouch/$name:dev"
  step "building image $tag ..."
  ctx="$ctx_root/$name"
  # data/data and tmp/tmp are copied as `COPY data/ /`: copying the parent is what keeps
  # the directories' own modes (0700, 1777) in the image.
  mkdir -p "$ctx/data/data" "$ctx/tmp/tmp"
  chmod 0755 "$ctx/data" "$ctx/tmp"
  chmod 0700 "$ctx/data/data"
  chmod 1777 "$ctx/tmp/tmp"
  cp -p "$here/$name.Dockerfile" "$ctx/Dockerfile"
  cp -p "$bindir/$bin" "$ctx/$bin"
  old_id="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null </dev/null || true)"
  if ! out="$(docker build -q -t "$tag" "$ctx" 2>&1 </dev/null)"; then
    printf '%s\n' "$out" >&2
    die "docker build of $tag failed (see above)"
  fi
  # A changed binary leaves the previous image untagged: drop it if it has no other tag
  # and no container uses it (`docker image rm` refuses then, which is fine).
  new_id="$(docker image inspect -f '{{.Id}}' "$tag" </dev/null)"
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ] \
     && [ "$(docker image inspect -f '{{len .RepoTags}}' "$old_id" 2>/dev/null </dev/null)" = 0 ]; then
    docker image rm "$old_id" >/dev/null 2>&1 </dev/null || true
  fi
done

# ---- summary
echo
printf '%-20s %-73s %s\n' TAG "IMAGE ID" SIZE
for name in "${images[@]}"; do
  tag="vouch/$name:dev"
  id="$(docker image inspect -f '{{.Id}}' "$tag" </dev/null)"
  size="$(docker image inspect -f '{{.Size}}' "$tag" </dev/null)"
  printf '%-20s %-73s %s (%s MiB)\n' "$tag" "$id" "$size" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')"
done
step "done"
