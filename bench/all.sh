#!/usr/bin/env bash
# `npm run bench [-- --quick] [--backends ...]`: every benchmark in turn, the
# options to each Node one (npm would hand them to the last command only): step
# times, scale, wasm beside PyTorch (bench/torch.ts), the simulated
# active-learning loop, then the studio's responsiveness figures from the
# @timing e2e specs.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsx bench/run.ts "$@"
npx tsx bench/scale.ts "$@"
npx tsx bench/torch.ts "$@"
npx tsx bench/active-learning.ts "$@"
npx playwright test --grep @timing --reporter=line
