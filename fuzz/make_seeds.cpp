// Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) and the dictionaries
// (fuzz/dict/), so that they can be made again when a format changes:
//   build/fuzz/bin/chroom-fuzz-make-seeds <source dir>
// (scripts/fuzz --make-seeds runs it). Existing seeds of the same name are overwritten;
// inputs the fuzzer found are kept in fuzz/regressions/, never here.
//
// The grpc_connection seeds are recorded: a real nghttp2 client makes real calls (unary,
// server streaming, bidi, metadata, deadlines, the compressed flag, JSON, resets) against
// a grpc_connection back to back in memory, and what the client sent is the seed.
#include "daemon/config.hpp"
#include "fuzz/fuzz_server.hpp"
#include "fuzz/join_token_fixture.hpp"
#include "fuzz/unary_methods.hpp"
#include "transport/join_token.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <nghttp2/nghttp2.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

namespace {

namespace fs = std::filesystem;
namespace pb = google::protobuf;
using namespace chroom;
using header_list = std::vector<std::pair<std::string, std::string>>;

fs::path corpus_root;
fs::path dict_root;

void write_seed(const std::string& target, const std::string& name, std::string_view bytes) {
  auto dir = corpus_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out)
    throw std::runtime_error("cannot write " + (dir / name).string());
}

std::string grpc_frame(std::string_view message, uint8_t flag = 0) {
  auto size = static_cast<uint32_t>(message.size());
  std::string out{static_cast<char>(flag), static_cast<char>(size >> 24),
                  static_cast<char>(size >> 16), static_cast<char>(size >> 8),
                  static_cast<char>(size)};
  return out + std::string{message};
}

// --- recorded client sessions ------------------------------------------------------------

/// A plain nghttp2 client whose output is recorded.
class recording_client {
public:
  recording_client() {
    nghttp2_session_callbacks* callbacks = nullptr;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_client_new(&session_, callbacks, this);
    nghttp2_session_callbacks_del(callbacks);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~recording_client() { nghttp2_session_del(session_); }
  recording_client(const recording_client&) = delete;
  recording_client& operator=(const recording_client&) = delete;

  /// A request; its body goes in DATA frames of at most `max_chunk` bytes, then
  /// END_STREAM (or trailers) unless `open` keeps the stream open.
  int32_t request(const header_list& headers, std::string body, bool end = true,
                  size_t max_chunk = SIZE_MAX, header_list trailers = {}) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [name, value] : headers)
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                     value.size(), NGHTTP2_NV_FLAG_NONE});
    nghttp2_data_provider provider{};
    provider.read_callback = [](nghttp2_session*, int32_t id, uint8_t* buf, size_t length,
                                uint32_t* flags, nghttp2_data_source*, void* user) -> ssize_t {
      return static_cast<recording_client*>(user)->read_body(id, buf, length, flags);
    };
    auto id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &provider, this);
    auto& s = streams_[id];
    s.body = std::move(body);
    s.end = end;
    s.max_chunk = max_chunk;
    s.trailers = std::move(trailers);
    return id;
  }

  void send(int32_t id, std::string_view bytes, bool end) {
    auto& s = streams_.at(id);
    s.body.append(bytes);
    s.end = end;
    nghttp2_session_resume_data(session_, id);
  }

  void reset(int32_t id) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }
  void ping() { nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr); }

  std::string take_output() {
    std::string out;
    for (int i = 0; i < 10000; ++i) {
      const uint8_t* data = nullptr;
      auto n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0)
        break;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    return out;
  }

  void receive(const std::vector<char>& bytes) {
    nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(bytes.data()),
                             bytes.size());
  }

private:
  struct stream {
    std::string body;
    size_t offset = 0;
    bool end = true;
    size_t max_chunk = SIZE_MAX;
    header_list trailers;
  };

  ssize_t read_body(int32_t id, uint8_t* buf, size_t length, uint32_t* flags) {
    auto& s = streams_[id];
    auto take = std::min({length, s.max_chunk, s.body.size() - s.offset});
    std::memcpy(buf, s.body.data() + s.offset, take);
    s.offset += take;
    if (s.offset == s.body.size() && s.end) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s.trailers.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nva;
        for (const auto& [name, value] : s.trailers)
          nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                         reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                         value.size(), NGHTTP2_NV_FLAG_NONE});
        nghttp2_submit_trailer(session_, id, nva.data(), nva.size());
      }
      return static_cast<ssize_t>(take);
    }
    if (take == 0)
      return NGHTTP2_ERR_DEFERRED;
    return static_cast<ssize_t>(take);
  }

  nghttp2_session* session_ = nullptr;
  std::map<int32_t, stream> streams_;
};

/// A client session against a real server; `script` makes the calls, given a function
/// that moves bytes both ways until both sides are quiet. The client's bytes are the seed.
template <class Script> std::string record(Script&& script) {
  recording_client client;
  fuzz::server_options options; // the defaults: what header 00 00 00 00 selects
  fuzz::fuzz_server server{options};
  std::string recorded;
  auto pump = [&] {
    for (int round = 0; round < 1000; ++round) {
      auto to_server = client.take_output();
      recorded += to_server;
      server.receive(fuzz::as_bytes(to_server));
      std::vector<char> to_client;
      server.connection().produce(to_client, SIZE_MAX);
      client.receive(to_client);
      if (to_server.empty() && to_client.empty())
        return;
    }
  };
  script(client, pump);
  pump();
  return recorded;
}

header_list grpc_headers(std::string_view method,
                         std::string_view content_type = "application/grpc") {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":path", "/chroom.fuzz.v1.FuzzService/" + std::string{method}},
          {":authority", "localhost"},
          {"content-type", std::string{content_type}},
          {"te", "trailers"}};
}

header_list with(header_list headers, header_list more) {
  headers.insert(headers.end(), more.begin(), more.end());
  return headers;
}

void connection_seeds() {
  using client = recording_client;
  std::map<std::string, std::string> sessions;
  sessions["unary_echo"] =
    record([](client& c, auto&) { c.request(grpc_headers("Unary"), grpc_frame("hello")); });
  sessions["unary_metadata"] = record([](client& c, auto&) {
    c.request(with(grpc_headers("Unary"), {{"grpc-timeout", "250m"},
                                           {"x-request-id", "req-0001"},
                                           {"x-tenant", "acme"},
                                           {"trace-bin", "AAECAwQ"},
                                           {"user-agent", "grpc-python/1.51.1"},
                                           {"grpc-accept-encoding", "identity,deflate,gzip"}}),
              grpc_frame(std::string(300, 'm')));
  });
  sessions["server_streaming"] =
    record([](client& c, auto&) { c.request(grpc_headers("Stream"), grpc_frame("three please")); });
  sessions["bidi"] = record([](client& c, auto& pump) {
    auto id = c.request(grpc_headers("Echo"), grpc_frame("one"), false);
    pump();
    c.send(id, grpc_frame("two") + grpc_frame("three"), false);
    pump();
    c.send(id, grpc_frame(""), true);
  });
  sessions["compressed_flag"] = record([](client& c, auto&) {
    c.request(with(grpc_headers("Unary"), {{"grpc-encoding", "gzip"}}), grpc_frame("zz", 1));
  });
  sessions["json_call"] = record([](client& c, auto&) {
    c.request(grpc_headers("Unary", "application/json"), R"({"message":"hello"})");
  });
  sessions["fail"] =
    record([](client& c, auto&) { c.request(grpc_headers("Fail"), grpc_frame("x")); });
  sessions["cancel"] =
    record([](client& c, auto&) { c.request(grpc_headers("Cancel"), grpc_frame("x"), false); });
  sessions["client_reset"] = record([](client& c, auto& pump) {
    auto id = c.request(grpc_headers("Hold"), grpc_frame("x"), false);
    pump();
    c.reset(id);
  });
  sessions["request_trailers"] = record([](client& c, auto&) {
    c.request(grpc_headers("Echo"), grpc_frame("t"), true, SIZE_MAX, {{"x-done", "1"}});
  });
  sessions["concurrent_calls"] = record([](client& c, auto&) {
    for (auto method : {"Echo", "Unary", "Stream", "Headers", "Fail"})
      c.request(grpc_headers(method), grpc_frame(method));
  });
  sessions["split_message"] = record([](client& c, auto&) {
    c.request(grpc_headers("Echo"), grpc_frame(std::string(20000, 'b')), true, 997);
  });
  sessions["big_response"] =
    record([](client& c, auto&) { c.request(grpc_headers("Big"), grpc_frame("big")); });
  sessions["ping_headers"] = record([](client& c, auto&) {
    c.ping();
    c.request(grpc_headers("Headers"), grpc_frame("h"));
  });
  sessions["bad_requests"] = record([](client& c, auto&) {
    c.request(grpc_headers("Echo", "text/plain"), "hello");
    auto get = grpc_headers("Echo");
    get[0].second = "GET";
    c.request(get, "");
    c.request(with(grpc_headers("Echo"), {{"grpc-timeout", "soon"}}), grpc_frame("x"));
    c.request(with(grpc_headers("Echo"), {{"bad-bin", "!!!"}}), grpc_frame("x"));
    c.request(grpc_headers("Echo"), grpc_frame("x").substr(0, 3));
  });
  const std::string default_header(4, '\0');
  for (const auto& [name, bytes] : sessions)
    write_seed("grpc_connection", name, default_header + bytes);
  // The same calls under other options: answers after a turn, small limits, bytes in pieces.
  const std::pair<std::string, std::string> variants[] = {
    {"deferred", std::string{"\x00\x01\x00\x00", 4}},
    {"small_limits", std::string{"\x55\x02\x00\x00", 4}},
    {"pieces", std::string{"\x00\x00\x07\x2a", 4}},
  };
  for (const auto& [suffix, header] : variants)
    for (const auto& name : {"bidi", "concurrent_calls", "split_message", "json_call"})
      write_seed("grpc_connection", std::string{name} + "_" + suffix, header + sessions[name]);
  write_seed("grpc_connection", "http1_request",
             default_header + "POST /chroom.fuzz.v1.FuzzService/Echo HTTP/1.1\r\nHost: x\r\n\r\n");
}

// --- frame programs ------------------------------------------------------------------------

/// Programs for h2_frames_fuzz.cpp, byte for byte in the order its reader takes them.
void frame_seeds() {
  const std::string header(4, '\0');
  // HEADERS of a new stream: op 0, stream "new", no flags byte set, END_HEADERS, no size
  // update, 3 extra fields, the valid gRPC head with path `path` (0 Echo .. 7 Headers),
  // its 6 fields and the extras as never-indexed literals (representation 2).
  // The extras: te, x-request-id, grpc-encoding identity; or content-type
  // application/json last (the last content-type counts).
  auto request = [](uint8_t path, bool json = false) {
    std::string op{0, 0, 0, 1, 1, 0, 1, static_cast<char>(path)};
    op += std::string(6, '\2');
    for (char extra : {char{17}, char{23}, json ? char{15} : char{22}})
      op += std::string{extra, 2};
    return op;
  };
  // DATA with one gRPC message on the newest stream: op 3, stream 0, flags, length, body,
  // compressed flag 0, exact length, no split.
  auto message = [](std::string_view body, bool end) {
    std::string op{3, 0, static_cast<char>(end ? 1 : 0), static_cast<char>(body.size())};
    op += body;
    op += std::string{0, 3, 1};
    return op;
  };
  const std::string settings_ack{8};
  const std::string turn{12, 0};
  write_seed("h2_frames", "unary_echo",
             header + "\1" + request(0) + message("hello", true) + turn + settings_ack);
  write_seed("h2_frames", "unary", header + "\1" + request(1) + message("ping", true) + turn);
  write_seed("h2_frames", "stream", header + "\1" + request(2) + message("go", true) + turn + turn);
  write_seed("h2_frames", "bidi",
             header + "\1" + request(0) + message("a", false) + turn + message("b", false) + turn +
               message("c", true) + turn);
  write_seed("h2_frames", "fail_cancel_hold",
             header + "\1" + request(3) + request(4) + message("x", false) + request(5) +
               message("y", false) + std::string{5, 0, 4} + turn);
  write_seed("h2_frames", "window_ping_priority",
             header + "\1" + settings_ack + request(0) + std::string{6, 0, 2} + std::string{9, 0} +
               "12345678" + std::string{10, 0, 0, 16} + message("w", true) + turn);
  write_seed("h2_frames", "continuation",
             header + "\1" + std::string{0, 0, 0, 0, 0, 0, 1, 0} + std::string(6, '\2') +
               std::string{17, 2, 23, 2, 22, 2} + "\x07" + std::string{2, 1, 1} +
               message("c", true) + turn);
  write_seed("h2_frames", "json", header + "\1" + request(1, true) + std::string{15, 0, 1} + turn);
  write_seed("h2_frames", "goaway_owner",
             header + "\1" + request(6) + std::string{13, 2} + std::string{13, 3} +
               message("s", true) + std::string{11, 0} + turn);
  write_seed("h2_frames", "small_limits_deferred",
             std::string{"\x55\x01\x00\x00", 4} + "\1" + request(0) + message("0123456789", false) +
               request(7) + message("abc", true) + turn + turn);
  write_seed("h2_frames", "pieces",
             std::string{"\x00\x00\x05\x11", 4} + "\1" + request(1) + message("pieces", true) +
               turn);
}

// --- the other targets -----------------------------------------------------------------------

void wire_seeds() {
  // First byte: 0 timeout, 1 percent, 2 base64, 3+ decoder (then limit choice, max piece).
  write_seed("grpc_wire", "timeout_ms", std::string(1, '\0') + "250m");
  write_seed("grpc_wire", "timeout_hours", std::string(1, '\0') + "99999999H");
  write_seed("grpc_wire", "percent", std::string{"\1"} + "caf\xc3\xa9 100%\n");
  write_seed("grpc_wire", "base64", std::string{"\2"} + "AAECAwQ=");
  const std::string messages =
    grpc_frame("one") + grpc_frame("") + grpc_frame(std::string(300, 'x'));
  write_seed("grpc_wire", "decoder_whole", std::string{3, 0, 0} + messages);
  write_seed("grpc_wire", "decoder_pieces", std::string{3, 0, 4} + messages);
  write_seed("grpc_wire", "decoder_small_limit", std::string{3, 3, 16} + messages);
  write_seed("grpc_wire", "decoder_compressed", std::string{3, 0, 0} + grpc_frame("z", 1));
  write_seed("grpc_wire", "decoder_partial",
             std::string{3, 0, 2} + grpc_frame("abcdef").substr(0, 8));
}

/// Fills every field of `message` (to `depth` levels of nesting) with a plain value.
void populate(pb::Message& message, int depth) {
  const auto* descriptor = message.GetDescriptor();
  const auto* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->containing_oneof() != nullptr && field->index_in_oneof() != 0)
      continue;
    if (field->is_map())
      continue;
    using type = pb::FieldDescriptor::CppType;
    auto set = [&](auto&& setter, auto&& adder) {
      if (field->is_repeated()) {
        adder();
        adder();
      } else {
        setter();
      }
    };
    switch (field->cpp_type()) {
      case type::CPPTYPE_INT32:
        set([&] { reflection->SetInt32(&message, field, -7); },
            [&] { reflection->AddInt32(&message, field, 3); });
        break;
      case type::CPPTYPE_INT64:
        set([&] { reflection->SetInt64(&message, field, 1234567890123); },
            [&] { reflection->AddInt64(&message, field, 5); });
        break;
      case type::CPPTYPE_UINT32:
        set([&] { reflection->SetUInt32(&message, field, 42); },
            [&] { reflection->AddUInt32(&message, field, 7); });
        break;
      case type::CPPTYPE_UINT64:
        set([&] { reflection->SetUInt64(&message, field, 99); },
            [&] { reflection->AddUInt64(&message, field, 1); });
        break;
      case type::CPPTYPE_DOUBLE:
        set([&] { reflection->SetDouble(&message, field, 12.5); },
            [&] { reflection->AddDouble(&message, field, 0.25); });
        break;
      case type::CPPTYPE_FLOAT:
        set([&] { reflection->SetFloat(&message, field, 0.5f); },
            [&] { reflection->AddFloat(&message, field, 1.5f); });
        break;
      case type::CPPTYPE_BOOL:
        set([&] { reflection->SetBool(&message, field, true); },
            [&] { reflection->AddBool(&message, field, true); });
        break;
      case type::CPPTYPE_ENUM: {
        const auto* value = field->enum_type()->value(field->enum_type()->value_count() - 1);
        set([&] { reflection->SetEnum(&message, field, value); },
            [&] { reflection->AddEnum(&message, field, value); });
        break;
      }
      case type::CPPTYPE_STRING:
        set([&] { reflection->SetString(&message, field, "eu-west/room-1"); },
            [&] { reflection->AddString(&message, field, "vp8"); });
        break;
      case type::CPPTYPE_MESSAGE:
        if (depth > 0) {
          auto* child = field->is_repeated() ? reflection->AddMessage(&message, field)
                                             : reflection->MutableMessage(&message, field);
          populate(*child, depth - 1);
        }
        break;
    }
  }
}

void json_seeds(std::set<std::string>& words) {
  const auto& methods = fuzz::unary_methods();
  for (size_t i = 0; i < methods.size(); ++i) {
    const auto& method = methods[i];
    auto index = static_cast<char>(i << 1);
    std::unique_ptr<pb::Message> request{method.request->New()};
    populate(*request, 3);
    std::string json;
    (void)pb::util::MessageToJsonString(*request, &json);
    auto short_name = method.name.substr(method.name.rfind('.') + 1);
    write_seed("json_mapping", short_name + "_request.json.bin", std::string{index} + json);
    std::unique_ptr<pb::Message> response{method.response->New()};
    populate(*response, 3);
    write_seed("json_mapping", short_name + "_response.pb",
               std::string{static_cast<char>(index | 1)} + response->SerializeAsString());
    for (const auto* type : {method.request->GetDescriptor(), method.response->GetDescriptor()})
      for (int f = 0; f < type->field_count(); ++f)
        words.insert(type->field(f)->json_name());
  }
}

void collect_config_words(const pb::Descriptor* type, std::set<std::string>& words,
                          std::set<const pb::Descriptor*>& seen) {
  if (!seen.insert(type).second)
    return;
  for (int i = 0; i < type->field_count(); ++i) {
    const auto* field = type->field(i);
    words.insert(field->name());
    if (field->enum_type() != nullptr)
      for (int v = 0; v < field->enum_type()->value_count(); ++v)
        words.insert(field->enum_type()->value(v)->name());
    if (field->message_type() != nullptr)
      collect_config_words(field->message_type(), words, seen);
  }
}

void config_seeds(const fs::path& source) {
  for (const auto* dir : {"deploy/config", "deploy/container", "apps/profiles"}) {
    if (!fs::exists(source / dir))
      continue;
    for (const auto& entry : fs::directory_iterator(source / dir)) {
      if (entry.path().extension() != ".yaml")
        continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      write_seed("config_yaml", entry.path().filename().string(), text);
    }
  }
  write_seed("config_yaml", "empty.yaml", "");
  write_seed("config_yaml", "listen.yaml", "listen:\n  host: 127.0.0.1\n  port: 0\n");
  write_seed("config_yaml", "flow_style.yaml",
             "{listen: {host: 127.0.0.1, port: 7443}, logging: {level: LOG_LEVEL_DEBUG}}\n");
  write_seed("config_yaml", "bad_key.yaml", "listen:\n  hots: x\n");
  write_seed("config_yaml", "anchors.yaml", "a: &x {b: 1}\nlisten: *x\n");
  std::set<std::string> words;
  std::set<const pb::Descriptor*> seen;
  collect_config_words(config::v1::OrchestratorConfig::descriptor(), words, seen);
  std::ofstream dict(dict_root / "config_yaml.dict", std::ios::trunc);
  dict << "# Keys and enum values of chroom.config.v1.OrchestratorConfig (make_seeds)\n";
  for (const auto& word : words)
    dict << '"' << word << ": \"\n";
  for (auto syntax : {"- ", "{", "}", "[", "]", "&a ", "*a", "!!str ", "---", "\\x0a  ", "null",
                      "true", "0x10", "1e9"})
    dict << '"' << syntax << "\"\n";
}

void join_token_seeds() {
  using fuzz::join_token_fixture::key;
  const std::string nul(1, '\0'); // mode 0: a hostile token follows
  transport::join_claims claims;
  claims.client_id = "alice";
  claims.app_id = "telemedicine";
  claims.room_id = "consult-42";
  claims.node_id = std::string{fuzz::join_token_fixture::node_id};
  claims.role = "host";
  claims.lease_id = "lease-7";
  claims.issued_at_s = fuzz::join_token_fixture::now_s - 10;
  claims.expires_at_s = fuzz::join_token_fixture::now_s + 600;
  write_seed("join_token", "valid", nul + transport::sign_join_token(claims, key));
  claims.publish = "audio video";
  claims.recording = true;
  claims.tier = "audio_only";
  write_seed("join_token", "valid_optional", nul + transport::sign_join_token(claims, key));
  claims.expires_at_s = fuzz::join_token_fixture::now_s - 1;
  write_seed("join_token", "expired", nul + transport::sign_join_token(claims, key));
  claims.expires_at_s = fuzz::join_token_fixture::now_s + 600;
  claims.node_id = "node-2";
  write_seed("join_token", "wrong_node", nul + transport::sign_join_token(claims, key));
  write_seed("join_token", "alg_none", nul + "eyJhbGciOiJub25lIn0.e30.");
  // Mode 1: the claims in join_token_fuzz.cpp's order; strings as a length byte and bytes.
  std::string round_trip{1};
  auto add = [&](std::string_view text) {
    round_trip.push_back(static_cast<char>(text.size()));
    round_trip += text;
  };
  add("alice");
  add("telemedicine");
  add("app/r\"1\"");
  round_trip.push_back(1); // the fixture's node
  add("host");
  add("l\x7f"
      "7");
  round_trip += std::string{0, 0, 0, 0, 0x65, 0x53, static_cast<char>(0xf1), 0}; // iat
  round_trip += std::string{1, 0, 0x0f};                                         // exp: now + 16
  round_trip.push_back(0x0f); // pub, rec = 1, tier
  add("audio video");
  add("audio_only");
  write_seed("join_token", "round_trip", round_trip);
}

std::string framed(const medianode::v1::NodeMessage& message) {
  return grpc_frame(message.SerializeAsString());
}

void node_message_seeds() {
  medianode::v1::NodeMessage reg;
  auto& r = *reg.mutable_register_();
  r.set_node_id("eu-west.node_1");
  r.set_credential("secret");
  r.set_protocol_version("1.0");
  r.set_software_version("chroom-sfu 2.4.1");
  auto* endpoint = r.add_endpoints();
  endpoint->set_host("203.0.113.7");
  endpoint->set_port(3478);
  endpoint->set_transport(medianode::v1::Endpoint::TRANSPORT_UDP);
  r.mutable_location()->set_latitude(52.52);
  r.mutable_location()->set_longitude(13.405);
  r.mutable_location()->set_region("eu-central");
  r.mutable_location()->set_country("DE");
  r.mutable_capacity()->set_max_participants(500);
  r.mutable_capacity()->set_upload_mbps(1000);
  r.mutable_capacity()->set_download_mbps(1000);
  r.mutable_capacity()->set_cpu_cores(8);
  r.mutable_features()->add_codecs("opus");
  r.mutable_features()->set_relay(true);
  auto* room = r.add_rooms();
  room->set_room_id("app/room-1");
  room->set_participants(3);
  medianode::v1::NodeMessage stats;
  auto& s = *stats.mutable_stats();
  s.set_participants(3);
  s.set_rooms(1);
  s.set_cpu_load(0.25);
  s.set_bandwidth_in_mbps(12);
  s.set_bandwidth_out_mbps(30);
  s.set_packet_loss(0.01);
  s.set_jitter_ms(4);
  auto* rtt = s.add_peer_rtts();
  rtt->set_node_id("us-east.node_2");
  rtt->set_rtt_ms(80);
  medianode::v1::NodeMessage ack;
  ack.mutable_ack()->set_command_id(7);
  medianode::v1::NodeMessage event;
  event.mutable_event()->mutable_room_empty()->set_room_id("app/room-1");
  write_seed("node_messages", "register_stats", framed(reg) + framed(stats) + framed(stats));
  write_seed("node_messages", "session",
             framed(reg) + framed(stats) + framed(ack) + framed(event) + framed(reg));
  auto bad = reg;
  bad.mutable_register_()->mutable_location()->set_latitude(91);
  bad.mutable_register_()->set_protocol_version("1.0.0");
  write_seed("node_messages", "bad_register", framed(bad));
  auto bad_stats = stats;
  bad_stats.mutable_stats()->set_cpu_load(-1);
  write_seed("node_messages", "bad_stats", framed(reg) + framed(bad_stats));
}

void write_dict(const std::string& name, const std::set<std::string>& words) {
  std::ofstream dict(dict_root / (name + ".dict"), std::ios::trunc);
  dict << "# Field names of the unary methods' messages in JSON (make_seeds)\n";
  for (const auto& word : words)
    dict << "\"\\\"" << word << "\\\":\"\n";
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <source dir>\n";
    return 2;
  }
  fuzz::quiet_logs();
  try {
    fs::path source = argv[1];
    corpus_root = source / "fuzz" / "corpus";
    dict_root = source / "fuzz" / "dict";
    fs::create_directories(dict_root);
    connection_seeds();
    frame_seeds();
    wire_seeds();
    std::set<std::string> json_words;
    json_seeds(json_words);
    write_dict("json_mapping", json_words);
    config_seeds(source);
    join_token_seeds();
    node_message_seeds();
  } catch (const std::exception& e) {
    std::cerr << "make_seeds: " << e.what() << "\n";
    return 1;
  }
  std::cout << "seeds written to " << corpus_root.string() << "\n";
  return 0;
}
