#include "workers/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

namespace splitwise::engine {
namespace {

using nlohmann::json;

Status file_error(const std::filesystem::path& path, const std::string& what) {
  return Status::error(path.string() + ": " + what);
}

bool parse_dtype(const std::string& name, DType* out) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    if (name == dtype_name(dtype)) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

// Reads a JSON array of non-negative integers; false when it is anything else.
bool read_uints(const json& value, std::vector<std::int64_t>* out) {
  if (!value.is_array()) return false;
  out->clear();
  for (const json& item : value) {
    if (!item.is_number_integer() || item.get<std::int64_t>() < 0) return false;
    out->push_back(item.get<std::int64_t>());
  }
  return true;
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

float fp16_to_fp32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t out;
  if (exponent == 0x1f) {
    out = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
  } else if (exponent != 0) {
    out = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    out = sign;
  } else {
    // A half subnormal is a normal float: shift the leading one into the implicit bit.
    exponent = 127 - 15 + 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    out = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(out);
}

// ---- MappedFile ----

Result<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return file_error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return file_error(path, "not a regular file");
  }
  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<std::size_t>(st.st_size);
  if (file.size_ > 0) {  // mmap rejects length 0; an empty file maps to nothing
    void* addr = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int saved_errno = errno;
    ::close(fd);
    if (addr == MAP_FAILED)
      return file_error(path, std::string("mmap: ") + std::strerror(saved_errno));
    file.data_ = static_cast<const std::uint8_t*>(addr);
  } else {
    ::close(fd);
  }
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() {
  if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

// ---- tensors ----

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

void convert_to_fp32(const TensorInfo& tensor, float* out) {
  const std::size_t n = static_cast<std::size_t>(tensor.numel());
  switch (tensor.dtype) {
    case DType::kF32:
      std::memcpy(out, tensor.data, n * sizeof(float));  // data may be unaligned
      return;
    case DType::kBF16:
    case DType::kF16: {
      const bool bf16 = tensor.dtype == DType::kBF16;
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, tensor.data + 2 * i, sizeof(bits));
        out[i] = bf16 ? bf16_to_fp32(bits) : fp16_to_fp32(bits);
      }
      return;
    }
  }
}

// ---- SafetensorsFile ----

Result<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped.ok()) return mapped.status();
  const std::size_t file_size = mapped->size();
  if (file_size < 8) {
    return file_error(path, "too small to be a safetensors file (" + std::to_string(file_size) +
                                " bytes; the header length alone takes 8)");
  }
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | mapped->data()[i];  // LE
  if (header_len > file_size - 8) {
    return file_error(path, "header length " + std::to_string(header_len) +
                                " is larger than the file (" + std::to_string(file_size) +
                                " bytes); not a safetensors file or truncated");
  }
  const char* header_begin = reinterpret_cast<const char*>(mapped->data() + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len);
  } catch (const json::exception& e) {
    return file_error(path, std::string("invalid JSON header: ") + e.what());
  }
  if (!header.is_object()) return file_error(path, "JSON header is not an object");

  SafetensorsFile file;
  file.path_ = std::make_unique<std::filesystem::path>(path);
  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = file_size - data_start;
  std::vector<std::pair<std::uint64_t, const TensorInfo*>> by_offset;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;  // free-form strings, nothing we need
    const std::string where = "tensor " + name;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      return file_error(path, where + " lacks dtype, shape or data_offsets in the header");
    }
    if (!entry["dtype"].is_string()) return file_error(path, where + ": dtype is not a string");
    const std::string dtype_str = entry["dtype"].get<std::string>();
    TensorInfo info;
    info.name = name;
    if (!parse_dtype(dtype_str, &info.dtype)) {
      return Status::error("unsupported dtype " + dtype_str + " for tensor " + name + " in " +
                           path.string() + " (supported: F32, BF16, F16)");
    }
    std::vector<std::int64_t> offsets;
    if (!read_uints(entry["shape"], &info.shape)) {
      return file_error(path, where + ": shape is not a list of non-negative integers");
    }
    if (!read_uints(entry["data_offsets"], &offsets) || offsets.size() != 2 ||
        offsets[0] > offsets[1]) {
      return file_error(path, where + ": data_offsets is not a [begin, end] pair");
    }
    std::uint64_t expected = dtype_size(info.dtype);
    for (std::int64_t d : info.shape) {
      if (__builtin_mul_overflow(expected, static_cast<std::uint64_t>(d), &expected)) {
        return file_error(path, where + ": shape " + shape_string(info.shape) + " overflows");
      }
    }
    const auto begin = static_cast<std::uint64_t>(offsets[0]);
    const auto end = static_cast<std::uint64_t>(offsets[1]);
    if (end > data_size) {
      return Status::error(path.string() + " is truncated: tensor " + name + " needs bytes [" +
                           std::to_string(data_start + begin) + "," +
                           std::to_string(data_start + end) + ") but the file has " +
                           std::to_string(file_size));
    }
    if (end - begin != expected) {
      return file_error(path, where + " has shape " + shape_string(info.shape) + " of dtype " +
                                  dtype_str + " (" + std::to_string(expected) +
                                  " bytes) but its data_offsets span " +
                                  std::to_string(end - begin) + " bytes");
    }
    info.data = mapped->data() + data_start + begin;
    info.nbytes = static_cast<std::size_t>(expected);
    info.file = file.path_.get();
    const TensorInfo* stored = &file.tensors_.emplace(name, std::move(info)).first->second;
    by_offset.emplace_back(begin, stored);
  }
  // Overlapping tensors mean a corrupt header: two weights would silently share bytes.
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1].second;
    if (prev.nbytes > 0 && by_offset[i].first < by_offset[i - 1].first + prev.nbytes) {
      return file_error(path, "tensors " + prev.name + " and " + by_offset[i].second->name +
                                  " overlap in the data section");
    }
  }
  file.mapping_ = std::move(mapped.value());
  return file;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

// ---- SafetensorsModel ----

Result<SafetensorsModel> SafetensorsModel::open(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return file_error(dir, "not a directory");
  SafetensorsModel model;
  model.dir_ = dir;

  // Shard file -> the tensors the index promises it holds (empty without an index).
  std::map<std::string, std::vector<std::string>> shards;
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path, ec)) {
    std::ifstream in(index_path);
    json index;
    try {
      index = json::parse(in);
    } catch (const json::exception& e) {
      return file_error(index_path, std::string("invalid JSON: ") + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return file_error(index_path, "key weight_map is missing or not an object");
    }
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) {
        return file_error(index_path, "weight_map entry for " + tensor + " is not a file name");
      }
      shards[shard.get<std::string>()].push_back(tensor);
    }
  } else {
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".safetensors") shards[entry.path().filename().string()];
    }
    if (ec) return file_error(dir, "cannot list: " + ec.message());
  }
  if (shards.empty()) return file_error(dir, "no *.safetensors files found");

  for (const auto& [shard, expected] : shards) {
    const auto shard_path = dir / shard;
    if (!std::filesystem::exists(shard_path, ec)) {
      return file_error(index_path,
                        "names shard " + shard + " but " + shard_path.string() + " does not exist");
    }
    auto file = SafetensorsFile::open(shard_path);
    if (!file.ok()) return file.status();
    for (const std::string& tensor : expected) {
      if (file->find(tensor) == nullptr) {
        return file_error(index_path, "says tensor " + tensor + " is in " + shard +
                                          " but that file does not hold it");
      }
    }
    model.files_.push_back(std::move(file.value()));
  }
  // Index after every move into files_ is done; map nodes keep their addresses anyway.
  for (const SafetensorsFile& file : model.files_) {
    for (const auto& [name, info] : file.tensors()) {
      auto [it, inserted] = model.index_.emplace(name, &info);
      if (!inserted) {
        return file_error(dir, "tensor " + name + " appears in both " + it->second->file->string() +
                                   " and " + file.path().string());
      }
    }
  }
  return model;
}

const TensorInfo* SafetensorsModel::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsModel::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, info] : index_) names.push_back(name);
  return names;
}

}  // namespace splitwise::engine
