# The harness as a container image, for scaled-out runs (deploy/kubernetes/) and CI
# systems that run images. Build: docker build -t keyclaim-harness .
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The manifest names the benches, so cargo needs them to read it.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin keyclaim-harness

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/keyclaim-harness /usr/local/bin/keyclaim-harness
COPY scenarios /scenarios
# Not root: the manifests also ask for it (runAsNonRoot, uid 10001).
USER 10001
ENTRYPOINT ["keyclaim-harness"]
CMD ["--help"]
