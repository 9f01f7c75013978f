# A minimal eigenpub image: a static (musl) binary on Alpine, with git (for
# `created = "git"`) and CA certificates (for HTTPS registries). Build with
#   docker build -t eigenpub .
# and run in a project folder:
#   docker run --rm -u "$(id -u):$(id -g)" -v "$PWD:/work" -w /work eigenpub plan
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev build-base cmake perl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY schemas schemas
RUN cargo build --release --locked && strip target/release/eigenpub

FROM alpine:3
RUN apk add --no-cache git ca-certificates \
    && git config --system --add safe.directory '*'
COPY --from=build /src/target/release/eigenpub /usr/local/bin/eigenpub

ENTRYPOINT ["eigenpub"]
