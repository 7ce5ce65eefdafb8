#include "cluster/ring.hpp"

#include <algorithm>

namespace chroom::cluster {

namespace {

// FNV-1a over the bytes, then splitmix64's finalizer: FNV alone spreads short, similar
// keys ("room-1", "room-2") poorly in its high bits, which decide the winner.
uint64_t fnv1a(uint64_t hash, std::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

} // namespace

uint64_t rendezvous_score(std::string_view peer_id, std::string_view key) {
  uint64_t hash = fnv1a(0xcbf29ce484222325ull, peer_id);
  hash = fnv1a(hash ^ 0xff, key); // a separator: ("ab","c") and ("a","bc") differ
  return mix(hash);
}

std::vector<std::string> owners_of(std::string_view key, const std::vector<std::string>& peers,
                                   size_t count) {
  std::vector<std::pair<uint64_t, const std::string*>> scored;
  scored.reserve(peers.size());
  for (const auto& peer : peers)
    scored.emplace_back(rendezvous_score(peer, key), &peer);
  count = std::min(count, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(count),
                    scored.end(), [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : *a.second < *b.second;
                    });
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i)
    out.push_back(*scored[i].second);
  return out;
}

} // namespace chroom::cluster
