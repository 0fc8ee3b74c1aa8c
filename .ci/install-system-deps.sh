#!/usr/bin/env bash
# Installs what the test suite needs from Debian on a clean machine:
# Chromium for the Playwright end-to-end tests, and Mesa's lavapipe Vulkan
# driver (25.x, from bookworm-backports) so the webgpu npm package (Dawn) has a
# device in Node on a machine without a GPU; unzip and Python, the two ZIP
# readers test/zip.test.ts opens an export with.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/vulkan/icd.d/lvp_icd.json ] || need+=(mesa-vulkan-drivers)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v python3 >/dev/null 2>&1 || need+=(python3)
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
for tool in unzip python3; do
  if [[ " ${need[*]} " == *" $tool "* ]]; then apt-get install -y -qq "$tool" >/dev/null; fi
done
