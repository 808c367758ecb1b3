#!/usr/bin/env bash
# Refresh static/vendor/ from the versions package.json pins (run by hand after changing them, then
# commit the result): the app serves these copies itself, so it needs neither npm nor the internet.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
mkdir -p static/vendor
version() { node -p "require('./node_modules/$1/package.json').version"; }
# Each copy starts with a banner naming the package and version it came from (tests compare it
# with package.json; htmx also carries its own version string).
{
  echo "/* htmx.org $(version htmx.org), vendored from npm by frontend/vendor.sh */"
  cat node_modules/htmx.org/dist/htmx.min.js
} > static/vendor/htmx.min.js
{
  echo "/* htmx-ext-ws $(version htmx-ext-ws), vendored from npm by frontend/vendor.sh */"
  cat node_modules/htmx-ext-ws/dist/ws.js
} > static/vendor/ws.js
# Swagger UI for /schema/swagger (backend/lib/openapi.py), without its source-map comments: the maps
# are not vendored.
for file in swagger-ui-bundle.js swagger-ui.css; do
  {
    echo "/* swagger-ui-dist $(version swagger-ui-dist), vendored from npm by frontend/vendor.sh */"
    grep -v '^[/][/*]# sourceMappingURL=' "node_modules/swagger-ui-dist/$file"
  } > "static/vendor/$file"
done
echo "vendored htmx.org $(version htmx.org), htmx-ext-ws $(version htmx-ext-ws) and" \
  "swagger-ui-dist $(version swagger-ui-dist) into static/vendor/"
