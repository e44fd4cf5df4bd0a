# The official `openai` npm client (pinned in package-lock.json) against a real router
# with one prompt and one token worker. Included from tests/CMakeLists.txt, after
# SPLITWISE_SHARED_DIR is set. The first run installs the client with `npm ci`; the test
# skips (77) without the model, without node/npm, or when the npm registry is unreachable.
set(_splitwise_shared "${SPLITWISE_SHARED_DIR}")
if(NOT _splitwise_shared)
  set(_splitwise_shared "${PROJECT_SOURCE_DIR}/../shared")
endif()

# $1: the configured shared folder (SPLITWISE_SHARED at test time wins).
set(_openai_client_script [=[
export SPLITWISE_SHARED="${SPLITWISE_SHARED:-$1}"
model="$SPLITWISE_SHARED/models/stories260K/stories260K.bin"
[ -f "$model" ] || { echo "SKIP: model not found at $model (set SPLITWISE_SHARED)"; exit 77; }
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "SKIP: node and npm are not installed"; exit 77; }
if [ ! -d node_modules/openai ]; then
  log=$(npm ci --no-audit --no-fund --loglevel=error 2>&1) || {
    echo "$log"
    case "$log" in *ENOTFOUND*|*EAI_AGAIN*|*ECONNREFUSED*|*ECONNRESET*|*ETIMEDOUT*|*ENETUNREACH*|*EHOSTUNREACH*)
      echo "SKIP: npm ci could not reach the npm registry (no network?); run npm ci in $PWD"
      exit 77 ;;
    esac
    echo "npm ci failed in $PWD"; exit 1
  }
fi
exec node --test openai_client.test.mjs
]=])

add_test(NAME OpenAIClient.NpmOfficialClient
         COMMAND sh -c "${_openai_client_script}" sh "${_splitwise_shared}"
         WORKING_DIRECTORY "${CMAKE_CURRENT_LIST_DIR}")
set_tests_properties(OpenAIClient.NpmOfficialClient PROPERTIES
  LABELS cpu
  SKIP_RETURN_CODE 77
  TIMEOUT 300
  ENVIRONMENT "SPLITWISE_WORKER_BIN=$<TARGET_FILE:splitwise-worker>;SPLITWISE_ROUTER_BIN=$<TARGET_FILE:splitwise-router>")
