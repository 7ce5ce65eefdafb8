#pragma once

// What the fuzz targets share: a check that stops the run when an invariant breaks (it
// aborts, so libFuzzer saves the input as a crash), and a reader of fuzz input.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

namespace chroom::fuzz {

[[noreturn]] inline void invariant_broken(const char* condition, const char* file, int line,
                                          std::string_view detail) {
  std::fprintf(stderr, "\n%s:%d: invariant broken: %s\n  %.*s\n", file, line, condition,
               static_cast<int>(std::min<size_t>(detail.size(), 4000)), detail.data());
  std::abort();
}

/// Aborts with the condition and `detail` (anything convertible to std::string_view)
/// when `condition` is false. Not an assert: it stays on whatever NDEBUG says.
#define FUZZ_CHECK(condition, detail)                                                              \
  do {                                                                                             \
    if (!(condition))                                                                              \
      ::chroom::fuzz::invariant_broken(#condition, __FILE__, __LINE__, (detail));                  \
  } while (false)

/// Reads fuzz input from the front, field by field. Past the end every read yields zeros
/// (or nothing), so any input decodes into something and a short input is a short program.
class byte_reader {
public:
  byte_reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return size_ - pos_; }

  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>((u8() << 8) | u8()); }
  uint32_t u32() { return (uint32_t{u16()} << 16) | u16(); }
  /// One of `count` choices (count > 0).
  size_t pick(size_t count) { return u8() % count; }

  /// Up to `count` bytes, fewer when the input ends.
  std::span<const uint8_t> bytes(size_t count) {
    auto take = std::min(count, remaining());
    std::span<const uint8_t> out{data_ + pos_, take};
    pos_ += take;
    return out;
  }
  std::string_view text(size_t count) {
    auto span = bytes(count);
    return {reinterpret_cast<const char*>(span.data()), span.size()};
  }
  /// Everything left.
  std::span<const uint8_t> rest() { return bytes(remaining()); }

private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

inline std::span<const uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

} // namespace chroom::fuzz
