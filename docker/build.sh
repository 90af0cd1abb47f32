#!/usr/bin/env bash
# Builds the image of docker/Dockerfile and prints what it did. From the repository root:
#
#   docker/build.sh                          # dogbreed:latest (CPU; the ONNX/INT8 runtimes baked in)
#   docker/build.sh --smdebug                # dogbreed:smdebug, with smdebug for SageMaker Debugger's rules
#   docker/build.sh --base IMAGE --tag NAME  # any base with python 3 (an AWS Deep Learning Container: its torch stays)
#
# Where no image registry answers, the base is made here: Debian bookworm by debootstrap, imported as
# local/debian:bookworm. Where the PyTorch CPU index cannot be reached, torch and every other wheel are
# gathered on this host first (pip wheel, with this host's pip configuration) and served to the build on
# 127.0.0.1; the build then installs with --no-index, and never needs the network itself.
# An image whose build inputs are unchanged (same files, same arguments: the label dogbreed.build-hash) is
# kept as it is; --force rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${DOGBREED_IMAGE:-}"
base="${DOGBREED_BASE_IMAGE:-}"
smdebug=0
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --smdebug) smdebug=1; shift ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see docker/build.sh --help)" >&2; exit 2 ;;
    esac
done
extras="serve,onnx,openvino"
if [ "$smdebug" = 1 ]; then extras="$extras,smdebug"; fi
[ -n "$tag" ] || tag=$([ "$smdebug" = 1 ] && echo dogbreed:smdebug || echo dogbreed:latest)
torch_version=2.13.0          # one pair everywhere: the PyTorch CPU index and PyPI both have it
torchvision_version=0.28.0
default_base=python:3.11-slim-bookworm
local_base=local/debian:bookworm
debian_mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
started=$(date +%s)
say() { echo "build.sh: $*" >&2; }

if ! docker info >/dev/null 2>&1; then
    say "error: docker cannot reach a Docker engine (is dockerd running?)"; exit 2
fi
# One build at a time on a machine: a second build.sh (CI starts one early, the tests ask again) waits for
# the first and then finds its image up to date.
exec 9>"${TMPDIR:-/tmp}/dogbreed-docker-build.lock"
if ! flock -n 9; then
    say "another docker/build.sh is running: waiting for it"
    flock 9
fi
# The docker client without buildx: the engine's own (legacy) builder.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

reachable() { python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=10)
except Exception:
    sys.exit(1)
EOF
}

make_local_base() {
    if docker image inspect "$local_base" >/dev/null 2>&1; then
        say "base: $local_base (made earlier by debootstrap)"; return
    fi
    command -v debootstrap >/dev/null || { say "error: no registry answers and debootstrap is not installed (apt-get install debootstrap)"; exit 2; }
    local root; root=$(mktemp -d)
    say "base: no registry answers; debootstrap bookworm from $debian_mirror into $root"
    debootstrap --variant=minbase bookworm "$root" "$debian_mirror" >"$root.log" 2>&1 \
        || { tail -20 "$root.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import - "$local_base" >/dev/null
    rm -rf "$root" "$root.log"
    say "base: imported $local_base"
}

if [ -z "$base" ]; then
    if docker image inspect "$default_base" >/dev/null 2>&1 || timeout 60 docker pull -q "$default_base" >/dev/null 2>&1; then
        base="$default_base"
    else
        make_local_base; base="$local_base"
    fi
fi

# The inputs of the build: what the Dockerfile copies, and the arguments.
build_hash=$( { find pyproject.toml README.md src conf train.py serve docker -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum;
    echo "$base $extras $torch_version $torchvision_version"; } | sha256sum | cut -c1-16)
if [ "$force" = 0 ] && [ "$(docker image inspect -f '{{index .Config.Labels "dogbreed.build-hash"}}' "$tag" 2>/dev/null)" = "$build_hash" ]; then
    say "$tag is up to date (build hash $build_hash); --force rebuilds it"
    echo "$tag"; exit 0
fi

build_args=(--build-arg "BASE_IMAGE=$base" --build-arg "EXTRAS=$extras"
    --build-arg "TORCH_VERSION=$torch_version" --build-arg "TORCHVISION_VERSION=$torchvision_version")
server_pid=""
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true' EXIT
if ! reachable https://download.pytorch.org/whl/cpu/torch/; then
    # Gather the wheels here, with this host's pip (its indexes, find-links and certificates), for the
    # image's python 3.11 (Debian bookworm's; the wheels' tags must match it).
    host_python=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if [ "$host_python" != 3.11 ]; then
        say "error: the PyTorch CPU index cannot be reached and python3 here is $host_python, not 3.11: wheels gathered here would not fit the image"; exit 2
    fi
    wheels="${DOGBREED_WHEELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dogbreed/docker-wheels}"
    mkdir -p "$wheels"
    wanted=$({ python3 docker/requirements.py "$extras"; echo "torch==$torch_version+cpu";
        echo "torchvision==$torchvision_version"; echo "setuptools>=77"; echo wheel; })
    # Gathered before for the same requirements: pip would only ask the indexes again.
    if [ "$wanted" = "$(cat "$wheels/gathered-$smdebug.txt" 2>/dev/null)" ]; then
        say "wheels: no PyTorch CPU index; the wheels gathered in $wheels before serve the build"
    else
        say "wheels: no PyTorch CPU index; gathering torch==$torch_version+cpu and the [$extras] requirements into $wheels"
        echo "$wanted" >"$wheels/requirements.txt"
        python3 -m pip wheel --quiet --disable-pip-version-check --find-links "$wheels" -w "$wheels" \
            -r "$wheels/requirements.txt" 2> >(grep -v "^WARNING: Location" >&2)
        echo "$wanted" >"$wheels/gathered-$smdebug.txt"
    fi
    # The same port each time where it is free: the URL is a build argument, and a new one would make
    # Docker build the torch layer again.
    port=$(python3 -c 'import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 47613))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >/dev/null 2>&1 9>&- &
    server_pid=$!
    for _ in $(seq 50); do reachable "http://127.0.0.1:$port/" && break; sleep 0.2; done
    build_args+=(--build-arg "WHEELS=http://127.0.0.1:$port/")
fi

say "inputs ready in $(( $(date +%s) - started )) s; building $tag from $base (extras $extras, torch $torch_version, torchvision $torchvision_version)"
docker build --network host -f docker/Dockerfile "${build_args[@]}" \
    --label "dogbreed.build-hash=$build_hash" -t "$tag" . >&2
size=$(docker image inspect -f '{{.Size}}' "$tag")
say "built $tag: $((size / 1000000)) MB, in $(( $(date +%s) - started )) s"
echo "$tag"
