# vouch/node:dev — the operator node, built by docker/build.sh from a throw-away context
# holding this file, the static vouch-node binary and two empty directories (data/data,
# tmp/tmp). It is FROM scratch: nothing is pulled, and there is no shell in the image.
#
#   docker volume create vouch-node-data
#   docker run --rm -v vouch-node-data:/data vouch/node:dev keys generate    # prints the key
#   docker run -d --name vouch-node --network my-net --stop-timeout 30 \
#       -v vouch-node-data:/data \
#       -v /var/run/docker.sock:/var/run/docker.sock \
#       --group-add "$(stat -c %g /var/run/docker.sock)" \
#       vouch/node:dev
#
# Runs as uid:gid 65532:65532 (distroless "nonroot"), not root. It reaches the Docker
# daemon only through the socket mounted above, so it needs the socket's group: pass its
# gid with --group-add (it differs between hosts). Workloads run as sibling containers on
# the host's daemon, in the node's sandbox (no network, no mounts: they never see the
# socket). The node is PID 1 and handles SIGTERM itself; docker stop's default 10 s equals
# the node's shutdown_grace_ms, hence --stop-timeout 30, so it can remove its containers.
#
# /data holds operator.pem, jobs.sqlite, signing-history.sqlite and node.lock (the lock
# keeps a second node off the same volume). A fresh named volume takes /data's owner
# (65532) and mode (0700) from the image; a bind-mounted host directory does not: chown
# it to 65532:65532 first. /tmp (1777) is there for SQLite's temporary files.
#
# The peer-to-peer network is off unless asked for, e.g. -e VOUCH_P2P_LISTEN=/ip4/0.0.0.0/tcp/7000
# (nothing else listens, so only 8080 is EXPOSEd); mDNS finds peers on one bridge network.
#
# Never give this image or its container a `vouch.node` label: the node's orphan sweep
# removes containers carrying its own `vouch.node` value.
#
# With a registry you would build it the conventional way instead, multi-stage (not used
# here, because nothing can be pulled):
#
#   FROM rust:1.89-bookworm AS build
#   WORKDIR /src
#   COPY . .
#   RUN cargo build --release --locked -p vouch-node --bin vouch-node \
#    && install -d -o 65532 -g 65532 -m 0700 /out/data
#   FROM gcr.io/distroless/cc-debian12:nonroot    # glibc for a dynamic binary; uid 65532
#   COPY --from=build /src/target/release/vouch-node /usr/local/bin/vouch-node
#   COPY --from=build --chown=65532:65532 /out/data /data
#   ...the ENV, VOLUME, EXPOSE, ENTRYPOINT and CMD below
#
# (distroless/static-debian12:nonroot if the build keeps
# RUSTFLAGS="-C target-feature=+crt-static" --target x86_64-unknown-linux-gnu;
# debian:bookworm-slim plus `useradd -u 65532` if you want a shell for debugging.)
FROM scratch
COPY vouch-node /vouch-node
COPY --chown=65532:65532 data/ /
COPY tmp/ /
ENV VOUCH_DATA_DIR=/data \
    VOUCH_LISTEN=0.0.0.0:8080 \
    NO_COLOR=1
VOLUME ["/data"]
EXPOSE 8080
USER 65532:65532
LABEL org.opencontainers.image.title="vouch-node" \
      org.opencontainers.image.description="Vouch operator node: runs Docker workloads in a sandbox and signs receipts" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/vouch-node"]
CMD ["run"]
