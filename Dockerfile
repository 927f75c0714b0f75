# hookline container image: a build stage with the toolchain, and a small
# runtime stage that runs as an unprivileged user.
#
#   docker build -t hookline .
#   docker run --rm -e HOOKLINE__KAFKA__BOOTSTRAP_SERVERS=kafka:9092 -p 9464:9464 hookline
#
# The default command is `hookline run`; any other command works the same
# way (`docker run --rm hookline setup-topics --dry-run`).

FROM rust:1.88-bookworm AS builder
# librdkafka and the C libraries it uses (OpenSSL, zlib, zstd) are built
# from source and linked statically with the image's compiler, make and perl.
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hookline \
    && cp target/release/hookline /usr/local/bin/hookline

FROM debian:bookworm-slim
# CA certificates for HTTPS webhooks and TLS to Kafka; the binary needs no
# shared library beyond the C library.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hookline
COPY --from=builder /usr/local/bin/hookline /usr/local/bin/hookline
# `config/hookline.toml` is read from the working directory when present and
# is the same as the built-in defaults; mount another file over it, or set
# HOOKLINE__SECTION__KEY variables.
WORKDIR /app
COPY config/ config/
COPY topology/ topology/
# In a container the telemetry listener must be reachable from outside.
ENV HOOKLINE__TELEMETRY__LISTEN=0.0.0.0:9464 \
    HOOKLINE__TELEMETRY__LOG_FORMAT=json
EXPOSE 9464
USER 10001
ENTRYPOINT ["/usr/local/bin/hookline"]
CMD ["run"]
