// Structured HTTP/2 frame sequences into a server-side grpc_connection. Raw bytes rarely get
// past HPACK and frame validation; here the input is a program of frames that are
// well-formed or nearly so (HEADERS from a small table of gRPC-ish fields, CONTINUATION,
// DATA with gRPC prefixes, RST_STREAM, WINDOW_UPDATE, SETTINGS, PING, PRIORITY, GOAWAY),
// interleaved with what the owner does (answers, output with a budget, socket backlog,
// PING, GOAWAY), so the fuzzer reaches deep states: flow control, limits, half-closed
// streams, resets in flight. The 4-byte header of fuzz_server.hpp comes first; then one
// op per step (see the switch in LLVMFuzzerTestOneInput).
#include "fuzz/fuzz_server.hpp"
#include "fuzz/hpack.hpp"

#include <array>
#include <string>
#include <vector>

namespace {

using namespace chroom::fuzz;

constexpr std::string_view client_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t max_ops = 256;

enum frame_type : uint8_t {
  data_frame = 0x0,
  headers_frame = 0x1,
  priority_frame = 0x2,
  rst_stream_frame = 0x3,
  settings_frame = 0x4,
  ping_frame = 0x6,
  goaway_frame = 0x7,
  window_update_frame = 0x8,
  continuation_frame = 0x9,
};

constexpr uint8_t end_stream_flag = 0x1;
constexpr uint8_t ack_flag = 0x1;
constexpr uint8_t end_headers_flag = 0x4;
constexpr uint8_t padded_flag = 0x8;
constexpr uint8_t priority_flag = 0x20;

struct field {
  std::string_view name;
  std::string_view value;
  uint8_t static_index; // RFC 7541 Appendix A: the exact field (or its name), 0 if none
};

// What requests are made of: gRPC's fields and the ones that must be refused.
const std::array<field, 36> request_fields{{
  {":method", "POST", 3},
  {":method", "GET", 2},
  {":scheme", "http", 6},
  {":scheme", "https", 7},
  {":path", "/chroom.fuzz.v1.FuzzService/Echo", 4},
  {":path", "/chroom.fuzz.v1.FuzzService/Unary", 4},
  {":path", "/chroom.fuzz.v1.FuzzService/Stream", 4},
  {":path", "/chroom.fuzz.v1.FuzzService/Fail", 4},
  {":path", "/chroom.fuzz.v1.FuzzService/Cancel", 4},
  {":path", "/chroom.fuzz.v1.FuzzService/Hold", 4},
  {":path", "/chroom.fuzz.v1.FuzzService/Big", 4},
  {":path", "/chroom.fuzz.v1.FuzzService/Headers", 4},
  {":authority", "localhost", 1},
  {"content-type", "application/grpc", 31},
  {"content-type", "application/grpc+proto", 31},
  {"content-type", "application/json", 31},
  {"content-type", "text/plain", 31},
  {"te", "trailers", 0},
  {"grpc-timeout", "1S", 0},
  {"grpc-timeout", "99999999H", 0},
  {"grpc-timeout", "1x", 0},
  {"grpc-encoding", "gzip", 0},
  {"grpc-encoding", "identity", 0},
  {"x-request-id", "fuzz-0123456789", 0},
  {"trace-bin", "AAECAw==", 0},
  {"trace-bin", "!!!!", 0},
  {"custom-bin", "AAEC, AwQF", 0},
  {"chroom-forwarded", "peer-1", 0},
  {"user-agent", "grpc-c++/1.51.1", 58},
  {"connection", "keep-alive", 0},
  {"Upper-Case", "x", 0},
  {":status", "200", 8},
  {"content-length", "5", 28},
  {"x-nul", std::string_view{"a\0b", 3}, 0},
  {"host", "localhost", 38},
  {"x-long", "", 0}, // value: a long run, its length from the input
}};

const std::array<field, 4> trailer_fields{{
  {"grpc-status", "0", 0},
  {"x-trailer", "t", 0},
  {":path", "/late", 4},
  {"grpc-message", "bye", 0},
}};

// Bodies of JSON calls.
const std::array<std::string_view, 5> json_bodies{{
  R"({"message":"hello"})",
  R"({})",
  R"({"message":)",
  R"([1,2,3])",
  "{\"a\":\"\xff\"}",
}};

class program {
public:
  explicit program(byte_reader& in, fuzz_server& server) : in_(in), server_(server) {}

  void run() {
    send_raw(client_preface);
    // Most clients start with SETTINGS; the input may still send any frame first.
    if (in_.u8() % 4 != 0)
      frame(settings_frame, 0, 0, {});
    flush();
    for (size_t op = 0; op < max_ops && !in_.empty(); ++op) {
      step(in_.pick(17));
      flush();
    }
    server_.drain();
  }

private:
  void step(size_t op) {
    switch (op) {
      case 0:
      case 1: // the most useful op twice as likely: a request
        headers(new_stream(), true);
        return;
      case 2:
        continuation();
        return;
      case 3:
        grpc_data();
        return;
      case 4: {
        auto id = stream();
        auto flags = static_cast<uint8_t>(in_.u8() & (end_stream_flag | padded_flag));
        auto payload = std::string{in_.text(in_.u8())};
        data(id, flags, payload);
        return;
      }
      case 5: {
        static constexpr uint32_t codes[] = {0x0, 0x1, 0x2, 0x7, 0x8, 0xb, 0xff};
        std::string payload;
        append32(payload, codes[in_.pick(std::size(codes))]);
        frame(rst_stream_frame, 0, stream(), payload);
        return;
      }
      case 6: {
        static constexpr uint32_t increments[] = {1, 1000, 65535, 1u << 20, 0x7fffffff, 0};
        std::string payload;
        append32(payload, increments[in_.pick(std::size(increments))]);
        frame(window_update_frame, 0, in_.u8() % 2 == 0 ? 0 : stream(), payload);
        return;
      }
      case 7:
        settings();
        return;
      case 8:
        frame(settings_frame, ack_flag, 0, {});
        return;
      case 9: {
        auto flags = static_cast<uint8_t>(in_.u8() & ack_flag);
        std::string opaque{in_.text(8)};
        opaque.resize(8, '\0');
        frame(ping_frame, flags, 0, opaque);
        return;
      }
      case 10: {
        std::string payload;
        append32(payload, (in_.u8() % 2 == 0 ? 0x80000000u : 0) | stream());
        payload.push_back(static_cast<char>(in_.u8()));
        frame(priority_frame, 0, stream(), payload);
        return;
      }
      case 11: {
        std::string payload;
        append32(payload, last_stream_);
        append32(payload, in_.u8() % 3 == 0 ? 0x2 : 0x0);
        payload += "fuzz";
        frame(goaway_frame, 0, 0, payload);
        return;
      }
      case 12:
        server_.turn(fuzz_server::budget_choice(in_.u8()));
        return;
      case 13:
        owner_action();
        return;
      case 14:
        headers(stream(), false); // request trailers, or a second HEADERS on a stream
        return;
      case 15: {
        auto body = json_bodies[in_.pick(json_bodies.size())];
        data(stream(), in_.u8() % 2 == 0 ? end_stream_flag : 0, body);
        return;
      }
      case 16: // anything at all: unknown frame types, broken lengths
        send_raw(in_.text(in_.u8()));
        return;
    }
  }

  uint32_t new_stream() {
    auto choice = in_.u8() % 8;
    if (choice == 6)
      return 0; // a protocol error
    if (choice == 7)
      return next_stream_ > 2 ? next_stream_ - 2 : 1; // reused id
    auto id = next_stream_;
    next_stream_ += 2;
    opened_.push_back(id);
    last_stream_ = id;
    return id;
  }

  /// A stream the client has used, mostly; now and then one it never opened.
  uint32_t stream() {
    auto choice = in_.u8();
    if (opened_.empty() || choice >= 240) {
      static constexpr uint32_t odd_ones[] = {0, 2, 0x7fffffff, 999};
      return odd_ones[choice % std::size(odd_ones)];
    }
    return opened_[opened_.size() - 1 - choice % std::min<size_t>(opened_.size(), 8)];
  }

  void headers(uint32_t id, bool request) {
    auto flags = static_cast<uint8_t>(
      in_.u8() & (end_stream_flag | end_headers_flag | padded_flag | priority_flag));
    if (in_.u8() % 8 != 0)
      flags |= end_headers_flag; // mostly complete blocks
    std::string block = header_block(request);
    std::string payload;
    uint8_t pad = 0;
    if (flags & padded_flag) {
      pad = in_.u8() % 16;
      payload.push_back(static_cast<char>(pad));
    }
    if (flags & priority_flag) {
      append32(payload, stream());
      payload.push_back(static_cast<char>(in_.u8()));
    }
    if (!(flags & end_headers_flag)) {
      // The block continues in CONTINUATION frames (op 2), or never does.
      auto split = block.empty() ? 0 : in_.u8() % block.size();
      pending_block_ = block.substr(split);
      pending_stream_ = id;
      block.resize(split);
    }
    payload += block;
    payload.append(pad, '\0');
    frame(headers_frame, flags, id, payload);
  }

  void continuation() {
    auto id = in_.u8() % 4 == 0 ? stream() : pending_stream_;
    std::string fragment = pending_block_;
    if (fragment.empty())
      fragment = header_block(true);
    auto split = in_.u8() % (fragment.size() + 1);
    pending_block_ = fragment.substr(split);
    bool last = pending_block_.empty() || in_.u8() % 4 == 0;
    frame(continuation_frame, last ? end_headers_flag : 0, id, fragment.substr(0, split));
    if (last)
      pending_block_.clear();
  }

  std::string header_block(bool request) {
    std::string block;
    if (in_.u8() % 16 == 0)
      append_hpack_size_update(block, in_.u16());
    auto count = request ? 3 + in_.pick(10) : in_.pick(4);
    if (request && in_.u8() % 4 != 0) {
      // A valid gRPC request head, then whatever the input adds.
      for (size_t index :
           {size_t{0}, size_t{2}, 4 + in_.pick(8), size_t{12}, size_t{13}, size_t{17}})
        add_field(block, request_fields[index]);
    }
    for (size_t i = 0; i < count; ++i) {
      if (request)
        add_field(block, request_fields[in_.pick(request_fields.size())]);
      else
        add_field(block, trailer_fields[in_.pick(trailer_fields.size())]);
    }
    return block;
  }

  void add_field(std::string& block, const field& f) {
    auto how = static_cast<hpack_representation>(in_.u8() % 5);
    std::string long_value;
    std::string_view value = f.value;
    if (f.name == "x-long") {
      long_value.assign(size_t{in_.u16()} % 40000, 'v');
      value = long_value;
    }
    if (how == hpack_representation::indexed) {
      // An earlier field of ours in the dynamic table (62 is the newest), or a static
      // entry, or past the end of both.
      auto choice = in_.u8();
      uint32_t index = choice < 128          ? 62 + choice % 8
                       : f.static_index != 0 ? f.static_index
                                             : choice;
      append_hpack_field(block, how, f.name, value, index);
      return;
    }
    if (how == hpack_representation::indexed_name && f.static_index == 0)
      how = hpack_representation::without;
    append_hpack_field(block, how, f.name, value, f.static_index);
  }

  void grpc_data() {
    auto id = stream();
    auto flags = static_cast<uint8_t>(in_.u8() & (end_stream_flag | padded_flag));
    auto body = in_.text(in_.u8());
    static constexpr uint8_t compressed_flags[] = {0, 0, 0, 0, 0, 1, 2};
    auto compressed = compressed_flags[in_.pick(std::size(compressed_flags))];
    // The announced length: right mostly, else short, long or huge.
    uint32_t announced = static_cast<uint32_t>(body.size());
    switch (in_.u8() % 8) {
      case 0:
        announced += 1 + in_.u8();
        break;
      case 1:
        announced = announced > 0 ? announced - 1 : 0;
        break;
      case 2:
        announced = 0xffffffffu;
        break;
      default:
        break;
    }
    std::string payload;
    payload.push_back(static_cast<char>(compressed));
    append32(payload, announced);
    payload += body;
    // Split between two DATA frames now and then.
    if (in_.u8() % 4 == 0 && payload.size() > 1) {
      auto split = 1 + in_.u8() % (payload.size() - 1);
      data(id, 0, payload.substr(0, split));
      payload.erase(0, split);
    }
    data(id, flags, payload);
  }

  void data(uint32_t id, uint8_t flags, std::string_view body) {
    std::string payload;
    uint8_t pad = 0;
    if (flags & padded_flag) {
      pad = in_.u8() % 32;
      payload.push_back(static_cast<char>(pad));
    }
    payload += body;
    payload.append(pad, '\0');
    frame(data_frame, flags, id, payload);
  }

  void settings() {
    struct setting {
      uint16_t id;
      uint32_t value;
    };
    static constexpr setting choices[] = {
      {0x1, 0},          {0x1, 4096},  {0x1, 1u << 20}, {0x2, 0},     {0x2, 1},
      {0x3, 0},          {0x3, 100},   {0x4, 0},        {0x4, 65535}, {0x4, 0x7fffffff},
      {0x4, 0x80000000}, {0x5, 16384}, {0x5, 16777215}, {0x5, 100},   {0x6, 100},
      {0x8, 1},          {0xff, 7},
    };
    std::string payload;
    for (size_t i = 0, n = in_.pick(4); i < n; ++i) {
      const auto& s = choices[in_.pick(std::size(choices))];
      payload.push_back(static_cast<char>(s.id >> 8));
      payload.push_back(static_cast<char>(s.id));
      append32(payload, s.value);
    }
    frame(settings_frame, 0, 0, payload);
  }

  void owner_action() {
    switch (in_.u8() % 4) {
      case 0:
        server_.set_socket_backlog(size_t{in_.u16()} * 64);
        return;
      case 1:
        server_.set_socket_backlog(0);
        return;
      case 2:
        server_.connection().ping();
        return;
      case 3:
        server_.connection().go_away();
        return;
    }
  }

  static void append32(std::string& out, uint32_t value) {
    out.push_back(static_cast<char>(value >> 24));
    out.push_back(static_cast<char>(value >> 16));
    out.push_back(static_cast<char>(value >> 8));
    out.push_back(static_cast<char>(value));
  }

  void frame(uint8_t type, uint8_t flags, uint32_t stream_id, std::string_view payload) {
    auto length = payload.size();
    pending_.push_back(static_cast<char>(length >> 16));
    pending_.push_back(static_cast<char>(length >> 8));
    pending_.push_back(static_cast<char>(length));
    pending_.push_back(static_cast<char>(type));
    pending_.push_back(static_cast<char>(flags));
    append32(pending_, stream_id & 0x7fffffff);
    pending_ += payload;
  }

  void send_raw(std::string_view bytes) { pending_ += bytes; }

  void flush() {
    server_.feed(as_bytes(pending_));
    pending_.clear();
  }

  byte_reader& in_;
  fuzz_server& server_;
  std::string pending_;
  std::vector<uint32_t> opened_;
  uint32_t next_stream_ = 1;
  uint32_t last_stream_ = 0;
  std::string pending_block_;
  uint32_t pending_stream_ = 1;
};

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  chroom::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  byte_reader in{data, size};
  auto options = read_server_options(in);
  fuzz_server server{options};
  program{in, server}.run();
  return 0;
}
