# surge: one image for both binaries; the command picks the role:
#   surge-api      the HTTP front end (ports 8080, 9090)
#   surge-worker   the job runner (port 9090)
# Build: make image  (podman or docker). Kubernetes runs it as user 10001 with
# a read-only root filesystem and no capabilities (k8s/base).

# Build stage: the project's own build, with the Debian packages that
# scripts/install-deps.sh lists for the group "build".
FROM docker.io/library/debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh build \
    && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY Makefile ./
COPY common/ common/
COPY api/ api/
COPY worker/ worker/
RUN make -j"$(nproc)" BUILD=release
# The runtime root filesystem: the two binaries, exactly the shared libraries
# they load (their ldd closure, from the same Debian packages: libuv1,
# libhiredis0.14, libpq5, glibc, OpenSSL, ...), those packages' copyright
# files and those of the code compiled in (llhttp, jsmn), and a passwd entry
# for the user 10001.
COPY scripts/image-rootfs.sh scripts/
RUN scripts/image-rootfs.sh /rootfs build/release/surge-api build/release/surge-worker

# Runtime stage: nothing else: no shell, no package manager.
FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/bin
USER 10001:10001
EXPOSE 8080 9090
CMD ["surge-api"]
