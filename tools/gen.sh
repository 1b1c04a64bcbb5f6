#!/usr/bin/env bash
# Regenerates every generated file from proto/ (called by `make gen`; needs the tools `make` installs).
#   gen/go/kairos/...            Go messages and gRPC stubs (module github.com/kairos-mt5/kairos/gen/go)
#   gen/c/kairos/...             nanopb C code for the bridge DLL (types, marketdata, bridge)
#   python/<domain>/v1/          protobuf + gRPC stubs and .pyi, importable as kairos.<domain>.v1
#   python/sdk/<domain>/v1/      betterproto2 typed client SDK, importable as kairos.sdk.<domain>.v1
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONWARNINGS="ignore::UserWarning" # nanopb 0.4.7 warns that pkg_resources is deprecated

domains=()
for d in proto/kairos/*/; do domains+=("$(basename "$d")"); done

rm -rf gen/go/kairos gen/c/kairos .tools/gen python/sdk/message_pool.py
for d in "${domains[@]}"; do rm -rf "python/$d/v1" "python/sdk/$d"; done

buf generate 2> >(grep -v "^Writing " >&2) # betterproto2 lists every file it writes
buf generate --template buf.gen.nanopb.yaml

# grpcio-tools' protoc writes kairos/<domain>/v1/...; the repository's python/ folder is `kairos`.
for d in "${domains[@]}"; do
  src=.tools/gen/python/kairos/$d/v1
  dst=python/$d/v1
  mkdir -p "$dst"
  for f in "$src"/*; do
    # A *_pb2_grpc.py for a file without services holds only a version check: leave it out.
    if [[ $f == *_pb2_grpc.py ]] && ! grep -q '^class ' "$f"; then continue; fi
    cp "$f" "$dst/"
  done
  [[ -f python/$d/__init__.py ]] || printf '"""kairos.%s: see kairos.%s.v1 for the generated contract stubs."""\n' "$d" "$d" >"python/$d/__init__.py"
  printf '"""Generated from proto/kairos/%s/v1 by `make gen`. DO NOT EDIT."""\n' "$d" >"$dst/__init__.py"
done

# betterproto2 writes kairos/<domain>/v1/__init__.py beside message_pool.py; kairos.sdk drops the
# inner kairos/ level, so its relative import of message_pool moves up one level less.
sdk=.tools/gen/sdk
cp "$sdk/message_pool.py" python/sdk/message_pool.py
for d in "${domains[@]}"; do
  mkdir -p "python/sdk/$d/v1"
  printf '"""Generated from proto/kairos/%s/v1 by `make gen`. DO NOT EDIT."""\n' "$d" >"python/sdk/$d/__init__.py"
  sed 's/^from \.\.\.\.message_pool import/from ...message_pool import/' \
    "$sdk/kairos/$d/v1/__init__.py" >"python/sdk/$d/v1/__init__.py"
done
