#include "controller/api/inference_cluster.h"

#include <algorithm>

namespace splitwise::controller {

namespace {

const std::vector<std::string> kPools = {"prompt", "token", "mixed"};

// Typed field readers that record an error instead of throwing on a wrong type.
struct Reader {
  std::vector<FieldError>* errors;

  const Json* at(const Json& obj, const std::string& key) const {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  void bad(const std::string& field, const std::string& want, const Json& got) const {
    errors->push_back({field, "expected " + want + ", got " + got.dump()});
  }
  void read(const Json& obj, const std::string& key, const std::string& field,
            std::string* out) const {
    if (const Json* v = at(obj, key)) {
      if (v->is_string())
        *out = v->get<std::string>();
      else
        bad(field, "a string", *v);
    }
  }
  void read(const Json& obj, const std::string& key, const std::string& field, int* out) const {
    if (const Json* v = at(obj, key)) {
      if (v->is_number_integer())
        *out = v->get<int>();
      else
        bad(field, "an integer", *v);
    }
  }
  void read(const Json& obj, const std::string& key, const std::string& field,
            std::optional<int>* out) const {
    if (const Json* v = at(obj, key)) {
      if (v->is_number_integer())
        *out = v->get<int>();
      else
        bad(field, "an integer", *v);
    }
  }
  void read(const Json& obj, const std::string& key, const std::string& field,
            std::optional<double>* out) const {
    if (const Json* v = at(obj, key)) {
      if (v->is_number())
        *out = v->get<double>();
      else
        bad(field, "a number", *v);
    }
  }
  void read_object(const Json& obj, const std::string& key, const std::string& field,
                   Json* out) const {
    if (const Json* v = at(obj, key)) {
      if (v->is_object())
        *out = *v;
      else
        bad(field, "an object", *v);
    }
  }
};

PoolSpec parse_pool(const Json& j, const std::string& field, const Reader& r) {
  PoolSpec p;
  r.read(j, "replicas", field + ".replicas", &p.replicas);
  r.read(j, "minReplicas", field + ".minReplicas", &p.min_replicas);
  r.read(j, "maxReplicas", field + ".maxReplicas", &p.max_replicas);
  r.read(j, "gpuType", field + ".gpuType", &p.gpu_type);
  r.read(j, "gpusPerWorker", field + ".gpusPerWorker", &p.gpus_per_worker);
  r.read(j, "dtype", field + ".dtype", &p.dtype);
  r.read(j, "maxBatchTokens", field + ".maxBatchTokens", &p.max_batch_tokens);
  r.read(j, "maxNumSeqs", field + ".maxNumSeqs", &p.max_num_seqs);
  r.read(j, "kvCacheMB", field + ".kvCacheMB", &p.kv_cache_mb);
  if (const Json* ns = r.at(j, "nodeSelector")) {
    if (!ns->is_object()) {
      r.bad(field + ".nodeSelector", "an object of strings", *ns);
    } else {
      for (const auto& [k, v] : ns->items()) {
        if (v.is_string())
          p.node_selector[k] = v.get<std::string>();
        else
          r.bad(field + ".nodeSelector." + k, "a string", v);
      }
    }
  }
  r.read_object(j, "affinity", field + ".affinity", &p.affinity);
  r.read_object(j, "resources", field + ".resources", &p.resources);
  if (const Json* t = r.at(j, "tolerations")) {
    if (t->is_array())
      p.tolerations = *t;
    else
      r.bad(field + ".tolerations", "a list", *t);
  }
  return p;
}

}  // namespace

const std::vector<std::string>& known_gpu_types() {
  static const std::vector<std::string> types = {"H100", "H200", "A100", "A100-40GB",
                                                 "L40S", "L4",   "A10G", "CPU"};
  return types;
}

std::vector<std::string> gpu_product_labels(const std::string& t) {
  // GPU feature discovery writes the product name with spaces as dashes; SXM and PCIe
  // boards of one type differ, so each type matches all of its boards.
  if (t == "H100") return {"NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "NVIDIA-H100-NVL"};
  if (t == "H200") return {"NVIDIA-H200", "NVIDIA-H200-NVL"};
  if (t == "A100") return {"NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"};
  if (t == "A100-40GB") return {"NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"};
  if (t == "L40S") return {"NVIDIA-L40S"};
  if (t == "L4") return {"NVIDIA-L4"};
  if (t == "A10G") return {"NVIDIA-A10G"};
  return {};
}

ParsedSpec parse_spec(const Json& spec) {
  ParsedSpec out;
  const Reader r{&out.errors};
  ClusterSpec& s = out.spec;
  if (!spec.is_object()) {
    out.errors.push_back({"spec", "expected an object, got " + spec.dump()});
    return out;
  }
  r.read(spec, "image", "spec.image", &s.image);
  if (const Json* m = r.at(spec, "model")) {
    r.read(*m, "name", "spec.model.name", &s.model.name);
    r.read(*m, "path", "spec.model.path", &s.model.path);
    r.read(*m, "hostPath", "spec.model.hostPath", &s.model.host_path);
    if (const Json* pvc = r.at(*m, "pvc"))
      r.read(*pvc, "claimName", "spec.model.pvc.claimName", &s.model.pvc);
  }
  if (const Json* pools = r.at(spec, "pools")) {
    if (!pools->is_object()) {
      r.bad("spec.pools", "an object", *pools);
    } else {
      for (const auto& [name, pool] : pools->items()) {
        if (std::find(kPools.begin(), kPools.end(), name) == kPools.end()) {
          out.errors.push_back(
              {"spec.pools." + name, "unknown pool (known: prompt, token, mixed)"});
          continue;
        }
        if (pool.is_null()) continue;
        if (!pool.is_object()) {
          r.bad("spec.pools." + name, "an object", pool);
          continue;
        }
        s.pools[name] = parse_pool(pool, "spec.pools." + name, r);
      }
    }
  }
  if (const Json* rt = r.at(spec, "router")) {
    r.read(*rt, "replicas", "spec.router.replicas", &s.router.replicas);
    r.read(*rt, "serviceType", "spec.router.serviceType", &s.router.service_type);
    r.read(*rt, "port", "spec.router.port", &s.router.port);
  }
  r.read(spec, "kvTransfer", "spec.kvTransfer", &s.kv_transfer);
  if (const Json* slo = r.at(spec, "slo")) {
    r.read(*slo, "ttftSeconds", "spec.slo.ttftSeconds", &s.slo.ttft_seconds);
    r.read(*slo, "tbtSeconds", "spec.slo.tbtSeconds", &s.slo.tbt_seconds);
    r.read(*slo, "e2eSeconds", "spec.slo.e2eSeconds", &s.slo.e2e_seconds);
  }
  r.read_object(spec, "autoscaling", "spec.autoscaling", &s.autoscaling);
  return out;
}

std::vector<FieldError> validate(const ClusterSpec& s) {
  std::vector<FieldError> e;
  auto need = [&](bool ok, const std::string& field, const std::string& message) {
    if (!ok) e.push_back({field, message});
  };
  need(!s.model.name.empty(), "spec.model.name", "required");
  need(s.model.pvc.empty() != s.model.host_path.empty(), "spec.model",
       "set exactly one of spec.model.pvc and spec.model.hostPath");
  need(s.pools.count("prompt") || s.pools.count("mixed"), "spec.pools",
       "needs a prompt-capable pool (prompt or mixed)");
  need(s.pools.count("token") || s.pools.count("mixed"), "spec.pools",
       "needs a token-capable pool (token or mixed)");
  const auto& types = known_gpu_types();
  for (const auto& [name, p] : s.pools) {
    const std::string f = "spec.pools." + name;
    need(p.replicas >= 0, f + ".replicas", "must be >= 0");
    if (p.min_replicas) {
      need(*p.min_replicas >= 0, f + ".minReplicas", "must be >= 0");
      need(*p.min_replicas <= p.replicas, f + ".minReplicas",
           "must be <= replicas (" + std::to_string(*p.min_replicas) + " > " +
               std::to_string(p.replicas) + ")");
    }
    if (p.max_replicas)
      need(p.replicas <= *p.max_replicas, f + ".maxReplicas",
           "replicas must be <= maxReplicas (" + std::to_string(p.replicas) + " > " +
               std::to_string(*p.max_replicas) + ")");
    if (!p.gpu_type.empty())
      need(std::find(types.begin(), types.end(), p.gpu_type) != types.end(), f + ".gpuType",
           "unknown GPU type \"" + p.gpu_type +
               "\" (known: H100, H200, A100, A100-40GB, L40S, "
               "L4, A10G, CPU); use nodeSelector for others");
    need(!p.gpu_type.empty() || !p.node_selector.empty(), f + ".gpuType",
         "set gpuType (a known GPU) or an explicit nodeSelector");
    need(p.gpus_per_worker >= 1, f + ".gpusPerWorker", "must be >= 1");
    need(p.dtype == "bf16" || p.dtype == "fp32", f + ".dtype", "must be bf16 or fp32");
    need(p.max_batch_tokens >= 1, f + ".maxBatchTokens", "must be >= 1");
    need(p.max_num_seqs >= 1, f + ".maxNumSeqs", "must be >= 1");
    if (p.kv_cache_mb) need(*p.kv_cache_mb >= 1, f + ".kvCacheMB", "must be >= 1");
    if (s.kv_transfer == "nccl")
      need(p.on_gpu(), "spec.kvTransfer",
           "nccl needs GPU pools, but pool " + name + " is CPU; use tcp");
  }
  need(s.router.replicas >= 1, "spec.router.replicas", "must be >= 1");
  need(s.router.service_type == "ClusterIP" || s.router.service_type == "NodePort" ||
           s.router.service_type == "LoadBalancer",
       "spec.router.serviceType", "must be ClusterIP, NodePort or LoadBalancer");
  need(s.router.port >= 1 && s.router.port <= 65535, "spec.router.port", "must be in 1..65535");
  need(s.kv_transfer == "nccl" || s.kv_transfer == "tcp", "spec.kvTransfer", "must be nccl or tcp");
  auto positive = [&](const std::optional<double>& v, const std::string& f) {
    if (v) need(*v > 0.0, f, "must be positive");
  };
  positive(s.slo.ttft_seconds, "spec.slo.ttftSeconds");
  positive(s.slo.tbt_seconds, "spec.slo.tbtSeconds");
  positive(s.slo.e2e_seconds, "spec.slo.e2eSeconds");
  return e;
}

}  // namespace splitwise::controller
