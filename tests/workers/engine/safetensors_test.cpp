#include "workers/engine/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace splitwise::engine {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string le64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

// Serializes a header (given as JSON) and a data section the way the format lays them out.
// `unaligned` pads the header with a space so the data starts at an odd offset.
std::string safetensors_bytes(const json& header, const std::string& data, bool unaligned = false) {
  std::string text = header.dump();
  if (unaligned && text.size() % 2 == 0) text += ' ';
  return le64(text.size()) + text + data;
}

template <typename T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

void expect_open_error(const std::filesystem::path& path, const std::vector<std::string>& parts) {
  auto file = SafetensorsFile::open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr(path.filename().string()));
  for (const auto& part : parts) EXPECT_THAT(file.status().message(), HasSubstr(part));
}

TEST(Fp16, KnownBitPatterns) {
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x3555), 0.333251953125f);
  EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);               // largest normal
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(fp16_to_fp32(0x8000)));
  EXPECT_EQ(fp16_to_fp32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16_to_fp32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7e00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7c01)));  // signalling NaN stays NaN, not inf
}

#ifdef __FLT16_MAX__
TEST(Fp16, MatchesCompilerHalfForEveryBitPattern) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto half = std::bit_cast<_Float16>(static_cast<std::uint16_t>(bits));
    const float expected = static_cast<float>(half);
    const float got = fp16_to_fp32(static_cast<std::uint16_t>(bits));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << bits;
    } else {
      EXPECT_EQ(std::bit_cast<std::uint32_t>(got), std::bit_cast<std::uint32_t>(expected))
          << std::hex << bits;
    }
  }
}
#endif

TEST(Bf16, IsTheUpperHalfOfFp32) {
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xc049), -3.140625f);
  EXPECT_EQ(bf16_to_fp32(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bf16_to_fp32(0x0001), std::bit_cast<float>(0x00010000u));  // subnormal
}

TEST(SafetensorsFile, ReadsStories260KHf) {
  SW_REQUIRE_SHARED(path, "models/stories260K-hf/model.safetensors");
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->tensors().size(), 47u);  // 48 header entries, one of them __metadata__
  const TensorInfo* embed = file->find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->dtype, DType::kF32);
  EXPECT_EQ(embed->shape, (std::vector<std::int64_t>{512, 64}));
  EXPECT_EQ(embed->nbytes, 512u * 64u * 4u);
  EXPECT_EQ(file->find("lm_head.weight"), nullptr);
}

TEST(SafetensorsFile, ConvertsEveryDtype) {
  const auto dir = testing::fresh_temp_dir();
  const std::vector<float> f32 = {1.5f, -2.0f, 0.25f};
  const std::vector<std::uint16_t> bf16 = {0x3f80, 0xc000, 0x3e80};
  const std::vector<std::uint16_t> f16 = {0x3c00, 0xc000, 0x0001};
  json header = {{"__metadata__", {{"format", "pt"}}},
                 {"a", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 12}}}},
                 {"b", {{"dtype", "BF16"}, {"shape", {1, 3}}, {"data_offsets", {12, 18}}}},
                 {"c", {{"dtype", "F16"}, {"shape", {3, 1}}, {"data_offsets", {18, 24}}}}};
  // Real files may leave the data unaligned; the reader must not assume alignment.
  write_bytes(dir / "m.safetensors",
              safetensors_bytes(header, raw(f32) + raw(bf16) + raw(f16), /*unaligned=*/true));
  auto file = SafetensorsFile::open(dir / "m.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().message();
  std::vector<float> out(3);
  convert_to_fp32(*file->find("a"), out.data());
  EXPECT_EQ(out, f32);
  convert_to_fp32(*file->find("b"), out.data());
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f, 0.25f}));
  convert_to_fp32(*file->find("c"), out.data());
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24)}));
}

TEST(SafetensorsFile, RejectsUnsupportedDtypes) {
  const auto dir = testing::fresh_temp_dir();
  for (const std::string dtype : {"I8", "F64"}) {
    const std::size_t bytes = dtype == "I8" ? 4 : 32;
    json header = {{"w", {{"dtype", dtype}, {"shape", {4}}, {"data_offsets", {0, bytes}}}}};
    write_bytes(dir / "odd.safetensors", safetensors_bytes(header, std::string(bytes, '\0')));
    expect_open_error(dir / "odd.safetensors", {"unsupported dtype " + dtype, "tensor w"});
  }
}

TEST(SafetensorsFile, RejectsCorruptHeaders) {
  const auto dir = testing::fresh_temp_dir();
  write_bytes(dir / "garbage.safetensors", "this is not a safetensors file at all");
  expect_open_error(dir / "garbage.safetensors", {"header length", "larger than the file"});

  write_bytes(dir / "short.safetensors", "abc");
  expect_open_error(dir / "short.safetensors", {"too small"});

  write_bytes(dir / "empty.safetensors", "");
  expect_open_error(dir / "empty.safetensors", {"too small"});

  write_bytes(dir / "beyond.safetensors", le64(1000) + "{}");
  expect_open_error(dir / "beyond.safetensors", {"header length 1000", "larger than the file"});

  const std::string broken = "{\"w\": {\"dtype\": ";
  write_bytes(dir / "json.safetensors", le64(broken.size()) + broken);
  expect_open_error(dir / "json.safetensors", {"invalid JSON"});

  write_bytes(dir / "array.safetensors", safetensors_bytes(json::array({1, 2}), ""));
  expect_open_error(dir / "array.safetensors", {"not an object"});

  json no_offsets = {{"w", {{"dtype", "F32"}, {"shape", {1}}}}};
  write_bytes(dir / "fields.safetensors", safetensors_bytes(no_offsets, std::string(4, '\0')));
  expect_open_error(dir / "fields.safetensors", {"tensor w", "data_offsets"});
}

TEST(SafetensorsFile, ChecksOffsetsAgainstShapesAndEachOther) {
  const auto dir = testing::fresh_temp_dir();
  json wrong_size = {{"w", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 12}}}}};
  write_bytes(dir / "size.safetensors", safetensors_bytes(wrong_size, std::string(16, '\0')));
  expect_open_error(dir / "size.safetensors", {"tensor w", "[2,2]", "16 bytes", "span 12"});

  json overlap = {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
                  {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}}};
  write_bytes(dir / "overlap.safetensors", safetensors_bytes(overlap, std::string(12, '\0')));
  expect_open_error(dir / "overlap.safetensors", {"overlap"});

  json truncated = {{"w", {{"dtype", "BF16"}, {"shape", {8}}, {"data_offsets", {0, 16}}}}};
  const std::string bytes = safetensors_bytes(truncated, std::string(10, '\0'));
  write_bytes(dir / "trunc.safetensors", bytes);
  // Built with += because GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
  std::string range = "[";
  range += std::to_string(bytes.size() - 10);
  range += ",";
  expect_open_error(dir / "trunc.safetensors", {"is truncated", "tensor w", range,
                                                "the file has " + std::to_string(bytes.size())});
}

TEST(SafetensorsFile, RejectsTruncatedRealFile) {
  SW_REQUIRE_SHARED(src, "models/stories260K-hf/model.safetensors");
  const auto dir = testing::fresh_temp_dir();
  const std::string bytes = ::splitwise::testing::read_file(src);
  write_bytes(dir / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  expect_open_error(dir / "model.safetensors", {"is truncated", "needs bytes"});
}

TEST(SafetensorsFile, NamesMissingFiles) {
  const auto dir = testing::fresh_temp_dir();
  expect_open_error(dir / "absent.safetensors", {"cannot open"});
  auto as_dir = SafetensorsFile::open(dir);
  ASSERT_FALSE(as_dir.ok());
  EXPECT_THAT(as_dir.status().message(), HasSubstr("not a regular file"));
}

// Two shards holding one tensor each; `index` adds model.safetensors.index.json.
std::filesystem::path write_shards(bool index) {
  const auto dir = testing::fresh_temp_dir();
  const std::vector<float> a = {1, 2}, b = {3, 4, 5};
  json ha = {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
  json hb = {{"b", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 12}}}}};
  write_bytes(dir / "model-00001-of-00002.safetensors", safetensors_bytes(ha, raw(a)));
  write_bytes(dir / "model-00002-of-00002.safetensors", safetensors_bytes(hb, raw(b)));
  if (index) {
    json map = {
        {"metadata", {{"total_size", 20}}},
        {"weight_map",
         {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
    std::ofstream(dir / "model.safetensors.index.json") << map.dump();
  }
  return dir;
}

void expect_both_tensors(const SafetensorsModel& model) {
  ASSERT_NE(model.find("a"), nullptr);
  ASSERT_NE(model.find("b"), nullptr);
  EXPECT_EQ(model.find("a")->file->filename(), "model-00001-of-00002.safetensors");
  EXPECT_EQ(model.find("b")->file->filename(), "model-00002-of-00002.safetensors");
  std::vector<float> out(3);
  convert_to_fp32(*model.find("b"), out.data());
  EXPECT_EQ(out, (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(model.tensor_names(), (std::vector<std::string>{"a", "b"}));
}

TEST(SafetensorsModel, IndexesShardsWithAndWithoutIndexFile) {
  for (bool index : {true, false}) {
    auto model = SafetensorsModel::open(write_shards(index));
    ASSERT_TRUE(model.ok()) << model.status().message();
    expect_both_tensors(model.value());
  }
}

TEST(SafetensorsModel, RejectsBadIndexesAndDuplicates) {
  auto dir = write_shards(true);
  std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
  auto missing = SafetensorsModel::open(dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("model-00002-of-00002.safetensors"));
  EXPECT_THAT(missing.status().message(), HasSubstr("does not exist"));

  dir = write_shards(true);
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "model-00002-of-00002.safetensors"}})";
  auto wrong = SafetensorsModel::open(dir);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("does not hold it"));

  dir = write_shards(false);
  std::filesystem::copy_file(dir / "model-00001-of-00002.safetensors", dir / "extra.safetensors");
  auto dup = SafetensorsModel::open(dir);
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr("tensor a appears in both"));

  auto empty = SafetensorsModel::open(testing::fresh_temp_dir());
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("no *.safetensors"));
}

}  // namespace
}  // namespace splitwise::engine
