# The coordinator image: the control-plane build without libtorch (`make light`), on a slim
# Debian. It serves gRPC on 7077 and Prometheus metrics where --metrics-listen says.
# Build from the repository root after `make light`:
#   docker build -f experiments/deploy/docker/coordinator.Dockerfile -t ausweep-coordinator:0.1.0 .
FROM debian:bookworm-slim

RUN useradd --system --uid 10001 --create-home ausweep \
    && mkdir -p /var/lib/ausweep \
    && chown 10001 /var/lib/ausweep
COPY target/light/release/ausweep /usr/local/bin/ausweep

USER 10001
VOLUME ["/var/lib/ausweep"]
EXPOSE 7077 9090
ENTRYPOINT ["/usr/local/bin/ausweep"]
CMD ["coordinator", "--listen", "0.0.0.0:7077", "--metrics-listen", "0.0.0.0:9090", "--data-dir", "/var/lib/ausweep"]
