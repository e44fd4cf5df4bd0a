// What one reconcile pass asks of the manager besides success or an error: run the key
// again after a delay (e.g. while a rollout is still progressing). Shared by the manager
// and the reconciler so neither depends on the other.
#pragma once

#include <chrono>

namespace splitwise::controller {

struct ReconcileResult {
  std::chrono::milliseconds requeue_after{0};
};

}  // namespace splitwise::controller
