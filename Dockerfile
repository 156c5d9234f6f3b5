# syntax=docker/dockerfile:1
# fairlead's image: the `fairlead` binary and the CNI plugins its DaemonSet's init container copies to the node.
# Build from the repository root: docker build -t example.invalid/fairlead:0.1.0 .

FROM rust:1-bookworm AS builder
# protoc: bgpd's build script compiles the GoBGP API protos.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the cached target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fairlead --bin fairlead \
 && install -D -m 0755 target/release/fairlead /out/fairlead

FROM debian:bookworm-slim
# What the daemon runs besides itself: nft (the nftables crate drives `nft -j`), conntrack (flushing UDP entries of
# removed endpoints), modprobe (br_netfilter, IPVS modules). containernetworking-plugins puts bridge, host-local,
# portmap and loopback in /usr/lib/cni for the init container; ca-certificates for the API server's TLS.
# Versions are not pinned: bookworm's point releases carry security fixes, and the base tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      conntrack \
      containernetworking-plugins \
      kmod \
      nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/fairlead /usr/local/bin/fairlead
# No USER: the DaemonSet runs it privileged as root (sysctls, netlink, IPVS, nftables on the host).
ENTRYPOINT ["/usr/local/bin/fairlead"]
CMD ["run"]
