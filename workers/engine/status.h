// Status and Result<T>: how expected failures (bad files, bad input, no room)
// travel to a caller that can act on them. Broken invariants use SW_CHECK instead.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace splitwise {

class Status {
 public:
  Status() = default;
  static Status error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !failed_; }
  const std::string& message() const { return message_; }

  // Prefixes context ("loading model.safetensors: ") so the final message names
  // the file and the step without every callee knowing its caller.
  Status with_context(const std::string& context) const {
    return ok() ? *this : Status(context + ": " + message_);
  }

 private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  std::string message_;
};

template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : value_(std::move(status)) {
    if (std::get<Status>(value_).ok()) std::abort();  // a Result error must carry an error
  }

  bool ok() const { return std::holds_alternative<T>(value_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(value_);
  }
  T& value() & { return std::get<T>(value_); }
  const T& value() const& { return std::get<T>(value_); }
  T&& value() && { return std::get<T>(std::move(value_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  // By value: `for (auto& x : *make_result())` must not bind to a dead temporary.
  T operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> value_;
};

}  // namespace splitwise

// Aborts with file:line when an invariant the code itself guarantees is broken.
#define SW_CHECK(cond)                                                                  \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

#define SW_RETURN_IF_ERROR(expr)      \
  do {                                \
    ::splitwise::Status _st = (expr); \
    if (!_st.ok()) return _st;        \
  } while (0)
