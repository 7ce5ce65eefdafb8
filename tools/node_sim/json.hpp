// The few JSON bits the simulator prints (status lines, node descriptions): enough to be
// parsed by any JSON reader, without pulling in a JSON library for it.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

namespace chroom::node_sim {

// `text` as a JSON string literal, quotes included. Room and participant ids come from the
// orchestrator and may hold anything, so control characters are escaped too.
inline std::string json_string(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

} // namespace chroom::node_sim
