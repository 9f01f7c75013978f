# A minimal eigenpub image: a static (musl) binary on Alpine, with git (for
# `created = "git"`) and CA certificates (for HTTPS registries), run as an unprivileged
# user. Build with
#   docker build -t eigenpub .
# and run in a project folder, credentials from the environment (never on the command
# line: `-e NAME` passes the variable's value from this shell):
#   docker run --rm -u "$(id -u):$(id -g)" -v "$PWD:/work" -w /work \
#     -e EIGENPUB_REGISTRY_GHCR_IO_USERNAME -e EIGENPUB_REGISTRY_GHCR_IO_PASSWORD eigenpub plan
# or from a Docker config mounted read-only (its `auths`; a credential helper such as
# osxkeychain is not in the image):
#   docker run ... -e DOCKER_CONFIG=/docker -v "$HOME/.docker/config.json:/docker/config.json:ro" ...
#
# Base images are pinned by digest (the multi-platform index; the tag beside it says what
# it was when pinned: rust 1.98.1 and Alpine 3.24.2, from docker-library/repo-info).
# To update, look the new digests up (`docker buildx imagetools inspect rust:1-alpine`).
FROM rust:1-alpine@sha256:7cc1c22d77d9432f7fe012a70e6d3e555af54c2a6832700ed7d553f1769ae89f AS build
RUN apk add --no-cache musl-dev build-base cmake perl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY schemas schemas
RUN cargo build --release --locked && strip target/release/eigenpub

FROM alpine:3@sha256:5b02b42e375f7426f8d65c3af331ca05d9878f9989230354504e0b9dfd431f60
RUN apk add --no-cache git ca-certificates \
    && git config --system --add safe.directory '*' \
    && adduser -D -H -u 10001 -s /sbin/nologin eigenpub
COPY --from=build /src/target/release/eigenpub /usr/local/bin/eigenpub
# Not root; `docker run -u "$(id -u):$(id -g)"` runs as the owner of the mounted folder
# instead, so that files eigenpub writes (plans, the lock, OCI layouts) are the user's.
USER 10001:10001
WORKDIR /work

ENTRYPOINT ["eigenpub"]
