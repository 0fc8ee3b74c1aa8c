#!/usr/bin/env bash
# Installs what the test suite needs from Debian on a clean machine:
# Chromium for the Playwright end-to-end tests; Mesa's lavapipe Vulkan driver
# (25.x, from bookworm-backports) so the webgpu npm package (Dawn) has a device
# in Node on a machine without a GPU; PyTorch, OpenCV and numpy for Debian's
# python3 (test/torch*.test.ts run python/lesion_studio_torch under torchrun on
# CPUs); and unzip, which with Python's zipfile is one of the two ZIP readers
# test/zip.test.ts opens an export with.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/vulkan/icd.d/lvp_icd.json ] || need+=(mesa-vulkan-drivers)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
# Debian's own python3: a pyenv or venv python3 on PATH would not see apt's packages.
python_needs=()
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || python_needs+=(python3-torch)
/usr/bin/python3 -c 'import cv2' >/dev/null 2>&1 || python_needs+=(python3-opencv)
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || python_needs+=(python3-numpy)
need+=("${python_needs[@]}")
[ ${#need[@]} -eq 0 ] && exit 0
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [[ " ${need[*]} " == *" mesa-vulkan-drivers "* ]]; then
  apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
fi
if [[ " ${need[*]} " == *" chromium "* ]]; then
  apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
if [[ " ${need[*]} " == *" unzip "* ]]; then
  apt-get install -y -qq unzip >/dev/null
fi
if [ ${#python_needs[@]} -gt 0 ]; then
  apt-get install -y -qq "${python_needs[@]}" >/dev/null
fi
