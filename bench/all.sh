#!/usr/bin/env bash
# `npm run bench [-- --quick] [--backends ...]`: every benchmark in turn (wasm beside
# PyTorch in bench/torch.ts), the
# options to each Node one (npm would hand them to the last command only),
# then the studio's responsiveness figures from the @timing e2e specs.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsx bench/run.ts "$@"
npx tsx bench/scale.ts "$@"
npx tsx bench/torch.ts "$@"
npx playwright test --grep @timing --reporter=line
