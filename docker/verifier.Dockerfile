# vouch/verifier:dev — the collateral ledger and dispute API, built by docker/build.sh from
# a throw-away context holding this file, the static vouch-verifier binary and two empty
# directories (data/data, tmp/tmp). It is FROM scratch: nothing is pulled, no shell.
#
#   docker volume create vouch-verifier-data
#   docker run --rm -v vouch-verifier-data:/data vouch/verifier:dev keys generate
#   docker run -d --name vouch-verifier -v vouch-verifier-data:/data vouch/verifier:dev
#
# The default command serves on 0.0.0.0:9090 for the network `vouch-devnet` (the node's
# default). `run` has no environment variables for --listen and --network, so a command
# that replaces the default must repeat --listen 0.0.0.0:9090, e.g.
#   docker run ... vouch/verifier:dev run --listen 0.0.0.0:9090 --network my-net
#
# Runs as uid:gid 65532:65532. /data holds verifier.pem and ledger.sqlite; a fresh named
# volume takes /data's owner and mode (0700) from the image, a bind-mounted host directory
# must be chowned to 65532:65532 first. /tmp (1777) is there for SQLite's temporary files.
#
# With a registry you would build it the conventional way instead, multi-stage (not used
# here, because nothing can be pulled):
#
#   FROM rust:1.89-bookworm AS build
#   WORKDIR /src
#   COPY . .
#   RUN cargo build --release --locked -p vouch-verifier --bin vouch-verifier \
#    && install -d -o 65532 -g 65532 -m 0700 /out/data
#   FROM gcr.io/distroless/cc-debian12:nonroot    # glibc for a dynamic binary; uid 65532
#   COPY --from=build /src/target/release/vouch-verifier /usr/local/bin/vouch-verifier
#   COPY --from=build --chown=65532:65532 /out/data /data
#   ...the ENV, VOLUME, EXPOSE, ENTRYPOINT and CMD below
#
# (distroless/static-debian12:nonroot if the build keeps
# RUSTFLAGS="-C target-feature=+crt-static" --target x86_64-unknown-linux-gnu;
# debian:bookworm-slim plus `useradd -u 65532` if you want a shell for debugging.)
FROM scratch
COPY vouch-verifier /vouch-verifier
COPY --chown=65532:65532 data/ /
COPY tmp/ /
ENV VOUCH_VERIFIER_DATA_DIR=/data \
    NO_COLOR=1
VOLUME ["/data"]
EXPOSE 9090
USER 65532:65532
LABEL org.opencontainers.image.title="vouch-verifier" \
      org.opencontainers.image.description="Vouch verifier: restaked collateral ledger, disputes and slashing" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/vouch-verifier"]
CMD ["run", "--listen", "0.0.0.0:9090", "--network", "vouch-devnet"]
