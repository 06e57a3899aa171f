# syntax=docker/dockerfile:1.7
# Multi-stage build of every gateway binary into one small runtime image.
# Each container picks its binary with `command:` (see docker-compose.yml).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin gatewayd --bin gatewayctl \
        --bin gateway-identity --bin gateway-catalog --bin gateway-quota \
        --bin gateway-usage --bin gateway-edge --bin gateway-console \
    && mkdir -p /out \
    && cp target/release/gatewayd target/release/gatewayctl \
          target/release/gateway-identity target/release/gateway-catalog \
          target/release/gateway-quota target/release/gateway-usage \
          target/release/gateway-edge target/release/gateway-console /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/gateway --create-home gateway
COPY --from=build /out/ /usr/local/bin/
USER gateway
WORKDIR /var/lib/gateway
# The embedded default: the whole suite on SQLite under /var/lib/gateway/data.
CMD ["gatewayd"]
