#pragma once

// Just enough of an HPACK encoder (RFC 7541) to write the header blocks the frame-sequence
// target sends, including ones a real encoder never would: indexes past the tables, size
// updates in the middle of a block, uppercase names. No Huffman coding.

#include <cstdint>
#include <string>
#include <string_view>

namespace chroom::fuzz {

/// An integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above it.
inline void append_hpack_integer(std::string& out, uint8_t first, int prefix_bits, uint64_t value) {
  const uint64_t limit = (uint64_t{1} << prefix_bits) - 1;
  if (value < limit) {
    out.push_back(static_cast<char>(first | value));
    return;
  }
  out.push_back(static_cast<char>(first | limit));
  value -= limit;
  while (value >= 128) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

inline void append_hpack_string(std::string& out, std::string_view text) {
  append_hpack_integer(out, 0x00, 7, text.size());
  out.append(text);
}

enum class hpack_representation : uint8_t {
  incremental,  ///< literal with incremental indexing, new name (adds to the dynamic table)
  without,      ///< literal without indexing, new name
  never,        ///< literal never indexed, new name
  indexed_name, ///< literal without indexing, name from the table at `index`
  indexed,      ///< the whole field from the table at `index` (static 1..61, dynamic 62..)
};

/// One header field in the representation `how`; `index` is used by the indexed forms.
inline void append_hpack_field(std::string& out, hpack_representation how, std::string_view name,
                               std::string_view value, uint32_t index) {
  switch (how) {
    case hpack_representation::incremental:
      out.push_back(0x40);
      append_hpack_string(out, name);
      append_hpack_string(out, value);
      return;
    case hpack_representation::without:
      out.push_back(0x00);
      append_hpack_string(out, name);
      append_hpack_string(out, value);
      return;
    case hpack_representation::never:
      out.push_back(0x10);
      append_hpack_string(out, name);
      append_hpack_string(out, value);
      return;
    case hpack_representation::indexed_name:
      append_hpack_integer(out, 0x00, 4, index);
      append_hpack_string(out, value);
      return;
    case hpack_representation::indexed:
      append_hpack_integer(out, 0x80, 7, index);
      return;
  }
}

/// A dynamic table size update (only valid at the start of a block).
inline void append_hpack_size_update(std::string& out, uint32_t size) {
  append_hpack_integer(out, 0x20, 5, size);
}

} // namespace chroom::fuzz
