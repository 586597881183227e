#!/usr/bin/env bash
# Mint one software statement through a served issuer with the CI job's OIDC identity: the
# script behind action.yml (GitHub Actions) and ci/gitlab/software-statement.yml (GitLab CI).
#
# In:  SSI_ISSUER_URL, SSI_TEMPLATE, SSI_SET (claim=value lines), SSI_OUT, SSI_AUDIENCE, and the
#      CI's own environment (GitHub: ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN; GitLab: SSI_ID_TOKEN).
# Out: the compact JWS in $SSI_OUT; on GitHub, outputs statement, path, jti, digest.
set -euo pipefail

: "${SSI_ISSUER_URL:?the issuer URL is required (input issuer-url / SSI_ISSUER_URL)}"
: "${SSI_TEMPLATE:?the template is required (input template / SSI_TEMPLATE)}"
out="${SSI_OUT:-software-statement.jwt}"

args=(mint "$SSI_TEMPLATE" --remote "$SSI_ISSUER_URL" --oidc --json)
if [ -n "${SSI_AUDIENCE:-}" ]; then
  args+=(--audience "$SSI_AUDIENCE")
fi
while IFS= read -r line; do
  line="${line#"${line%%[![:space:]]*}"}"   # trim leading blanks (YAML block indentation)
  if [ -n "$line" ]; then
    args+=(--set "$line")
  fi
done <<< "${SSI_SET:-}"

result="$(issuer "${args[@]}")"

# Write the statement and the step outputs from the JSON result (Python is there: the issuer
# CLI runs on it).
SSI_RESULT="$result" SSI_OUT="$out" python3 - <<'PY'
import json, os
result = json.loads(os.environ["SSI_RESULT"])
out = os.environ["SSI_OUT"]
with open(out, "w", encoding="ascii") as f:
    f.write(result["software_statement"] + "\n")
outputs = os.environ.get("GITHUB_OUTPUT")
if outputs:
    with open(outputs, "a", encoding="utf-8") as f:
        for name, value in (("statement", result["software_statement"]), ("path", out),
                            ("jti", result["jti"]), ("digest", result["digest"])):
            f.write(f"{name}={value}\n")
print(f"minted {result['template']} statement {result['jti']} into {out}")
PY
