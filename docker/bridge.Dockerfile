# syntax=docker/dockerfile:1.7
# The MT5 bridge DLL (kairos_bridge.dll), cross-built with MinGW-w64 (posix threads, fully static)
# exactly as `make bridge-dll` does, and exported as a build artifact, not run as a container:
#
#   docker build -f docker/bridge.Dockerfile --target artifact --output type=local,dest=dist/bridge .
#
# dist/bridge then holds kairos_bridge.dll and the MQL5 sources to copy into the terminal's MQL5
# folder (Libraries/ and Experts/, Include/); see docs/bridge.md.
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
# Toolchain plus the nanopb 0.4.7 C runtime sources from Debian's source package (the version the
# generated gen/c code is pinned to).
RUN sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      cmake ninja-build mingw-w64 g++-mingw-w64-x86-64-posix dpkg-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 builder
USER 10001:10001
WORKDIR /home/builder
RUN apt-get source --download-only -qq nanopb=0.4.7-2 \
 && dpkg-source -x nanopb_0.4.7-2.dsc nanopb-src >/dev/null
COPY --chown=10001:10001 gen/c /home/builder/src/gen/c
COPY --chown=10001:10001 cpp/mt5_bridge /home/builder/src/cpp/mt5_bridge
# The terminal has no MinGW runtime DLLs: the build fails if the DLL imports anything beyond
# KERNEL32, msvcrt and WS2_32 (load error 126 in MT5 otherwise).
RUN cmake -S src/cpp/mt5_bridge -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_TOOLCHAIN_FILE=/home/builder/src/cpp/mt5_bridge/cmake/mingw-w64-x86_64.cmake \
      -DNANOPB_SRC_DIR=/home/builder/nanopb-src \
 && cmake --build build --target kairos_bridge \
 && x86_64-w64-mingw32-objdump -p build/kairos_bridge.dll | awk '/DLL Name:/ {print tolower($3)}' | sort -u > imports.txt \
 && cat imports.txt && ! grep -qvE '^(kernel32|msvcrt|ws2_32)\.dll$' imports.txt \
 && mkdir -p out/MQL5/Libraries && cp build/kairos_bridge.dll out/MQL5/Libraries/

FROM scratch AS artifact
COPY --from=build /home/builder/out/ /
COPY mql5/ /MQL5/
