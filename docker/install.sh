#!/bin/sh
# The Dockerfile's install steps, one per layer so that a change to the project reinstalls only the project:
#   install.sh python            python 3 and a virtual environment in /opt/venv (the base's packages stay visible)
#   install.sh torch VER VISION  torch and torchvision, CPU builds, unless the base already has them
#   install.sh project EXTRAS    the project from /opt/program with its extras
# WHEELS (a URL or folder of wheels) installs from there alone, without an index; TORCH_INDEX is where
# torch comes from otherwise (PyTorch's CPU index).
set -eu
pip_from() {
    if [ -n "${WHEELS:-}" ]; then
        pip install --no-index --find-links "$WHEELS" "$@"
    else
        pip install "$@"
    fi
}
case "$1" in
python)
    if ! command -v python3 >/dev/null || ! python3 -c "import ensurepip" 2>/dev/null; then
        # Debian's python 3.11 (a base made by debootstrap has none); the venv module brings pip.
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /usr/share/doc/*
    fi
    # --system-site-packages: on a Deep Learning Container its torch is reused instead of installed again.
    python3 -m venv --system-site-packages /opt/venv
    ;;
torch)
    if python -c "import torch, torchvision" 2>/dev/null; then
        python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'from the base')"
        exit 0
    fi
    if [ -n "${WHEELS:-}" ]; then
        pip_from "torch==$2" "torchvision==$3"
    else
        pip install --index-url "$TORCH_INDEX" "torch==$2" "torchvision==$3"
    fi
    if ! python -c "import torchvision" 2>/dev/null; then
        # PyPI's torchvision is built against CUDA torch: beside the CPU torch its compiled ops (nms, roi_align,
        # GPU JPEG decoding) cannot load, and its import stops at the fake kernels it registers for nms and
        # qnms unconditionally. Without the ops it registers them as for every other op (only when present);
        # models and transforms, all this project uses of torchvision, are Python.
        site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/torchvision
        rm -f "$site/_C.so" "$site/image.so"
        sed -i 's/^@torch.library.register_fake("torchvision::\(q\{0,1\}nms\)")/@register_meta("\1")/' \
            "$site/_meta_registrations.py"
        python -c "import torchvision"
        echo "torchvision: PyPI's CUDA build beside CPU torch, its compiled ops left out"
    fi
    python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
    ;;
project)
    pip_from ".[$2]"
    pip check
    # The installed package is what runs: the copied sources and the build's leftovers need not stay.
    rm -rf /opt/program/src /opt/program/build
    ;;
*)
    echo "install.sh: unknown step $1" >&2
    exit 2
    ;;
esac
