# herald: a static binary on an empty base image.
# Build: docker build -t <registry>/herald:v0.1.0 .

FROM rust:1.95-slim-bookworm AS build
# musl makes the binary static; ring's assembly needs a C compiler for musl,
# and jemalloc (the allocator, built from source) needs make as well.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other members must be present for Cargo to read the manifest.
COPY benches ./benches
COPY bench/tools ./bench/tools
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin herald \
    && cp target/x86_64-unknown-linux-musl/release/herald /herald

FROM scratch
COPY --from=build /herald /herald
USER 65534:65534
EXPOSE 9090 9292 8080 9440
ENTRYPOINT ["/herald"]
CMD ["controller"]
