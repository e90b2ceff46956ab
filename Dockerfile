# ringmq in a container. Build: docker build -t ringmq .
# Run (docs/operations.md, "Running in a container", says why each flag):
#   docker run -d --name ringmq \
#     --security-opt seccomp=unconfined --ulimit memlock=-1:-1 --ulimit rtprio=1 \
#     -e RINGMQ_CORES=2 -p 5672:5672 -p 5680-5682:5680-5682 -p 15692:15692 \
#     -e RINGMQ_DEFAULT_USER=admin -e RINGMQ_DEFAULT_PASS=change-me \
#     -v ringmq-data:/var/lib/ringmq ringmq

# ---- build: the release binary, from the locked dependencies
FROM rust:1-bookworm AS build
# aws-lc-sys (rustls's crypto) builds with the C compiler the image has;
# cmake is its fallback builder on some targets.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ringmq \
    && install -m 0755 target/release/ringmq /usr/local/bin/ringmq

# ---- run: the binary alone on a small Debian
FROM debian:bookworm-slim
# ca-certificates: the client side of `ringmq pub/sub/ctl` over TLS checks
# the system bundle when no --ca is given.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/ringmq --shell /usr/sbin/nologin ringmq \
    && mkdir -p /var/lib/ringmq /etc/ringmq \
    && chown ringmq:ringmq /var/lib/ringmq
COPY --from=build /usr/local/bin/ringmq /usr/local/bin/ringmq
COPY dist/ringmq.toml /etc/ringmq/ringmq.toml.sample
# Every flag of `ringmq serve` is also a RINGMQ_* variable; a config file
# goes in with RINGMQ_CONFIG=/etc/ringmq/ringmq.toml (a mounted file).
# Listen on every interface: the container's own network is the boundary.
ENV RINGMQ_DATA_DIR=/var/lib/ringmq \
    RINGMQ_LISTEN=0.0.0.0:5680 \
    RINGMQ_AMQP_LISTEN=0.0.0.0:5672 \
    RINGMQ_METRICS_LISTEN=0.0.0.0:15692
USER ringmq
VOLUME /var/lib/ringmq
# AMQP, native (shard i on 5681 + i), metrics and the HTTP API.
EXPOSE 5672 5680 5681-5696 15692
# A login and a Ping on the native listener, from inside the container
# (guest may log in from loopback); see the docs for a node without guest.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["ringmq", "ctl", "ping"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ringmq"]
CMD ["serve"]
