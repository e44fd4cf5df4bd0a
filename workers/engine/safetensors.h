// Read-only access to .safetensors files: one mmap per file, tensors looked up by name
// across the shards of a Hugging Face model directory, converted to fp32 on request.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::engine {

enum class DType { kF32, kBF16, kF16 };

const char* dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);

// bf16 is the upper half of an fp32, so widening is exact.
inline float bf16_to_fp32(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

// IEEE half to float, exact for every input: subnormals, signed zeros, inf, NaN payloads.
float fp16_to_fp32(std::uint16_t bits);

// A whole file mapped read-only. Pointers into data() stay valid while the object lives,
// also across moves, because the mapping itself never moves.
class MappedFile {
 public:
  static Result<MappedFile> open(const std::filesystem::path& path);

  MappedFile() = default;  // maps nothing
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void release();

  std::filesystem::path path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<std::int64_t> shape;
  const std::uint8_t* data = nullptr;  // inside the owning file's mapping; maybe unaligned
  std::size_t nbytes = 0;
  const std::filesystem::path* file = nullptr;  // the file that holds it (for messages)

  std::int64_t numel() const;
};

// "[512,64]": the form every shape appears in within error messages.
std::string shape_string(const std::vector<std::int64_t>& shape);

// Writes tensor.numel() floats to out.
void convert_to_fp32(const TensorInfo& tensor, float* out);

// One .safetensors file whose header has been checked against the file's size: every
// tensor's bytes lie inside the file, match its shape and dtype, and overlap no other.
class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return *path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;

 private:
  SafetensorsFile() = default;

  // Heap-held so TensorInfo::file stays valid when this object moves.
  std::unique_ptr<std::filesystem::path> path_;
  MappedFile mapping_;
  std::map<std::string, TensorInfo> tensors_;
};

// All tensors of a model directory: model.safetensors.index.json names the shards when
// present, else every *.safetensors file in the directory is read.
class SafetensorsModel {
 public:
  static Result<SafetensorsModel> open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const TensorInfo* find(const std::string& name) const;
  std::vector<std::string> tensor_names() const;

 private:
  std::filesystem::path dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace splitwise::engine
