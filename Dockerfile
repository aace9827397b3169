# syntax=docker/dockerfile:1.7
# The harness as a container image, for scaled-out runs (deploy/kubernetes/) and CI
# systems that run images. Build: docker build -t keyclaim-harness .
#
# Dependencies (aws-lc's C library among them) are built in their own layer from the
# recipe cargo-chef derives from Cargo.toml and Cargo.lock, so an edit to src/ rebuilds
# only this crate. BuildKit cache mounts keep the crates.io downloads between builds.
# Base images are pinned by digest (multi-arch indexes); to move to newer ones:
#   docker buildx imagetools inspect rust:1.95-bookworm      (and debian:bookworm-slim)

FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo chef cook --release --locked --bin keyclaim-harness --recipe-path recipe.json
# The manifest names the benches, so cargo needs them to read it.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin keyclaim-harness

FROM debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/keyclaim-harness /usr/local/bin/keyclaim-harness
COPY scenarios /scenarios
# Not root: the manifests ask for the same user and group (runAsUser, runAsGroup).
USER 10001:10001
ENTRYPOINT ["keyclaim-harness"]
CMD ["--help"]
