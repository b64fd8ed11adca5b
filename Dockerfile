# chipbench in a container: a build stage, then a slim runtime with the ONNX Runtime library from
# its PyPI wheel. The runtime's files are laid out and checked by scripts/container-root.sh, which
# CI also runs against the binary it already built, so this recipe cannot rot unnoticed.
#
#   docker build -t chipbench .                                          # CPU image
#   docker build -t chipbench:gpu --build-arg VARIANT=gpu .              # + CUDA provider
#   docker build -t chipbench --build-arg LAVAPIPE=1 .                   # + software Vulkan (wgpu)
#   add --build-arg CHIPBENCH_GIT_COMMIT=$(git rev-parse HEAD) for `chipbench --version`
#
#   docker run --rm -v "$PWD/results:/work/bench-results" chipbench bench --quick
#   docker run --rm --gpus all chipbench:gpu bench -b ort:cuda          # NVIDIA container toolkit
ARG DEBIAN=trixie

FROM rust:1.95-${DEBIAN} AS build
ARG VARIANT=cpu
ARG CHIPBENCH_GIT_COMMIT=
# python3-pip: the wheels (pip download only; nothing is installed into the system Python).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && if [ "$VARIANT" = gpu ]; then gpu=--gpu; else gpu=; fi \
 && scripts/container-root.sh $gpu target/release/chipbench /rootfs

FROM debian:${DEBIAN}-slim
ARG LAVAPIPE=0
RUN if [ "$LAVAPIPE" = 1 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1 \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /rootfs/ /
# ld.so.conf.d names /opt/cuda/lib in the GPU image; the NVIDIA container toolkit mounts the
# driver (libcuda) when the container runs with --gpus.
RUN ldconfig
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1 \
    CHIPBENCH_CACHE_DIR=/var/cache/chipbench
WORKDIR /work
ENTRYPOINT ["chipbench"]
CMD ["bench", "--quick"]
