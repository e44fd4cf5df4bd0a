#include "workers/engine/kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace splitwise::engine {
namespace {

TEST(BlockPool, AllocatesAllOrNothing) {
  BlockPool pool(4, 16);
  std::vector<BlockId> got;
  EXPECT_TRUE(pool.allocate(3, &got));
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_FALSE(pool.allocate(2, &got));  // only one left: nothing handed out
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(std::set<BlockId>(got.begin(), got.end()).size(), 3u);
}

TEST(BlockPool, ReferenceCountsKeepSharedBlocksAlive) {
  BlockPool pool(2, 16);
  std::vector<BlockId> got;
  ASSERT_TRUE(pool.allocate(1, &got));
  pool.retain(got[0]);
  EXPECT_EQ(pool.ref_count(got[0]), 2);
  pool.release(got[0]);
  EXPECT_EQ(pool.num_free(), 1);  // still held once
  pool.release(got[0]);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.ref_count(got[0]), 0);
}

TEST(BlockPoolDeath, ReleasingAFreeBlockIsAnInvariantBreak) {
  BlockPool pool(1, 16);
  EXPECT_DEATH(pool.release(0), "invariant failed");
}

TEST(KvCacheManager, GrowsTablesByBlockAndFreesThem) {
  BlockPool pool(8, 16);
  KvCacheManager kv(&pool);
  ASSERT_TRUE(kv.reserve(1, 1));
  EXPECT_EQ(kv.block_table(1).size(), 1u);
  ASSERT_TRUE(kv.reserve(1, 16));  // same block still fits
  EXPECT_EQ(kv.block_table(1).size(), 1u);
  ASSERT_TRUE(kv.reserve(1, 17));
  EXPECT_EQ(kv.block_table(1).size(), 2u);
  EXPECT_EQ(kv.blocks_missing(1, 64), 2);
  EXPECT_EQ(pool.num_free(), 6);
  kv.free(1);
  EXPECT_EQ(pool.num_free(), 8);
  EXPECT_FALSE(kv.has(1));
  kv.free(1);  // freeing twice is harmless for cancel paths
}

TEST(KvCacheManager, NoRoomChangesNothing) {
  BlockPool pool(3, 16);
  KvCacheManager kv(&pool);
  ASSERT_TRUE(kv.reserve(1, 32));
  EXPECT_FALSE(kv.reserve(2, 33));  // needs 3, 1 free
  EXPECT_FALSE(kv.has(2));
  EXPECT_FALSE(kv.reserve(1, 64));  // needs 2 more
  EXPECT_EQ(kv.block_table(1).size(), 2u);
  EXPECT_EQ(pool.num_free(), 1);
}

TEST(KvCacheManager, SharedPrefixOutlivesItsFirstOwner) {
  BlockPool pool(8, 4);
  KvCacheManager kv(&pool);
  ASSERT_TRUE(kv.reserve(1, 10));  // 3 blocks, two of them full
  kv.share_prefix(1, 2, 10);
  ASSERT_EQ(kv.block_table(2).size(), 2u);
  EXPECT_TRUE(
      std::equal(kv.block_table(2).begin(), kv.block_table(2).end(), kv.block_table(1).begin()));
  ASSERT_TRUE(kv.reserve(2, 10));  // child gets its own partial block
  EXPECT_NE(kv.block_table(2)[2], kv.block_table(1)[2]);
  kv.free(1);
  EXPECT_EQ(pool.num_free(), 8 - 3);
  kv.free(2);
  EXPECT_EQ(pool.num_free(), 8);
}

}  // namespace
}  // namespace splitwise::engine
