#include "actors/app_directory.hpp"

#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "actors/exception_log.hpp"
#include "actors/send_later.hpp"
#include "chroom/admin/v1/admin_service.pb.h"
#include "common/unix_time.hpp"
#include "transport/call_protocol.hpp"

#include <caf/all.hpp>
#include <fstream>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/message_differencer.h>
#include <limits>
#include <map>
#include <set>
#include <spdlog/spdlog.h>
#include <sstream>

namespace chroom::actors {
namespace {

using namespace transport;
namespace adm = chroom::admin::v1;
namespace cfg = chroom::config::v1;
namespace cv1 = chroom::cluster::v1;
namespace ev1 = chroom::apps::v1;

/// A peer that joins gets the audit events of this long ago and since (a restarted peer
/// catches up on what it missed), at most max_audit_catch_up of them.
constexpr auto audit_catch_up = std::chrono::hours{24 * 7};
constexpr size_t max_audit_catch_up = 20'000;
/// How often this peer's usage counts are written to the store and sent to the other
/// peers: a crash loses at most this much counting.
constexpr auto usage_flush_interval = std::chrono::seconds{5};
/// A peer that joins gets the usage records of this long ago and since.
constexpr auto usage_catch_up = std::chrono::hours{24 * 31};

/// ListAuditEvents pages.
constexpr uint32_t default_audit_page = 100;
constexpr uint32_t max_audit_page = 1000;

/// A rotated-out key keeps working this long unless the call says otherwise: a day lets
/// every backend pick up the new key in its next deploy.
constexpr uint32_t default_rotation_grace_ms = 24 * 3600 * 1000;

std::string serialized(const google::protobuf::Message& message) {
  std::string out;
  message.SerializeToString(&out);
  return out;
}

/// A file app as it is recorded: defaults applied, the script file read in, so that the
/// record means the same on peers that do not have the file.
std::optional<cfg::AppConfig> recorded_file_app(cfg::AppConfig app, std::string& error) {
  apps::apply_app_defaults(app);
  if (!app.hooks().script_file().empty()) {
    std::ifstream in(app.hooks().script_file(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      error = "app '" + app.app_id() + "': cannot read hooks.script_file '" +
              app.hooks().script_file() + "'";
      return std::nullopt;
    }
    app.mutable_hooks()->set_script(text.str());
    app.mutable_hooks()->clear_script_file();
  }
  return app;
}

cv1::AppRecord next_version(const std::string& app_id, const cv1::AppRecord* previous,
                            const std::string& peer_id) {
  cv1::AppRecord record;
  record.set_app_id(app_id);
  // Above every version this peer has seen, even when clocks of peers differ.
  int64_t now = unix_ms_now();
  if (previous != nullptr && previous->updated_unix_ms() >= now)
    now = previous->updated_unix_ms() + 1;
  record.set_updated_unix_ms(now);
  record.set_updated_by(peer_id);
  return record;
}

/// The version that makes a file app (as recorded_file_app made it) current, or nothing
/// when `previous` is that app from the file already.
std::optional<cv1::AppRecord> file_version(cfg::AppConfig app, const cv1::AppRecord* previous,
                                           const std::string& peer_id) {
  if (previous != nullptr && !previous->deleted() && previous->source() == cv1::APP_SOURCE_FILE &&
      google::protobuf::util::MessageDifferencer::Equals(previous->app(), app))
    return std::nullopt;
  auto record = next_version(app.app_id(), previous, peer_id);
  record.set_source(cv1::APP_SOURCE_FILE);
  *record.mutable_app() = std::move(app);
  return record;
}

adm::App app_view(const cv1::AppRecord& record) {
  adm::App app;
  *app.mutable_config() = apps::redacted(record.app());
  app.set_source(record.source() == cv1::APP_SOURCE_FILE ? "file" : "api");
  app.set_updated_unix_ms(record.updated_unix_ms());
  app.set_updated_by(record.updated_by());
  return app;
}

// --- the actor ----------------------------------------------------------------------------

struct directory_state {
  app_directory_settings settings;
  std::map<std::string, cv1::AppRecord, std::less<>> records;
  std::shared_ptr<const apps::app_catalog> catalog;
  std::vector<caf::actor> subscribers;
  /// Other peers' directories, by peer_id@incarnation (to spot newcomers).
  std::map<std::string, caf::actor> peers;
  /// This peer's usage counts by (app, epoch start), and those changed since the last
  /// flush.
  std::map<std::pair<std::string, int64_t>, ev1::UsageRecord> usage;
  std::set<std::pair<std::string, int64_t>> usage_dirty;
  /// Another peer's directory has sent its records (each sends all of them to a peer it
  /// sees for the first time): this peer has the cluster's apps, not only its store's.
  bool heard_from_peer = false;
  std::vector<caf::response_promise> sync_waiters;
};

using directory_actor = caf::stateful_actor<directory_state>;

std::vector<cv1::AppRecord> all_records(const directory_state& st) {
  std::vector<cv1::AppRecord> out;
  for (const auto& [id, record] : st.records)
    out.push_back(record);
  return out;
}

void publish(directory_actor* self) {
  auto& st = self->state;
  st.catalog = catalog_of(all_records(st));
  for (const auto& subscriber : st.subscribers)
    self->send(subscriber, app_catalog_atom::value, st.catalog);
}

void send_records(directory_actor* self, const caf::actor& to,
                  const std::vector<cv1::AppRecord>& records) {
  cv1::AppRecords message;
  for (const auto& record : records)
    *message.add_records() = record;
  self->send(to, app_records_atom::value, serialized(message));
}

void send_audit(directory_actor* self, const caf::actor& to,
                const std::vector<ev1::AppEvent>& events) {
  if (events.empty())
    return;
  cv1::AuditEvents message;
  for (const auto& event : events)
    *message.add_events() = event;
  self->send(to, peer_audit_atom::value, serialized(message));
}

/// Writes audit events this peer did not have; those seen here first go to the others.
void keep_audit(directory_actor* self, const std::vector<ev1::AppEvent>& events, bool local) {
  auto& st = self->state;
  std::string error;
  auto added = st.settings.store->add_audit(events, error);
  if (!error.empty())
    spdlog::error("apps: audit log: {}", error);
  if (local)
    for (const auto& [peer, directory] : st.peers)
      send_audit(self, directory, added);
}

void send_usage(directory_actor* self, const caf::actor& to,
                const std::vector<ev1::UsageRecord>& records) {
  if (records.empty())
    return;
  ev1::UsageRecords message;
  for (const auto& record : records)
    *message.add_records() = record;
  self->send(to, peer_usage_atom::value, serialized(message));
}

/// Writes this peer's changed counts and sends them to the other peers; forgets the
/// counts of epochs that ended (they are in the store).
void flush_usage(directory_actor* self) {
  auto& st = self->state;
  auto now = unix_ms_now();
  std::vector<ev1::UsageRecord> changed;
  for (const auto& key : st.usage_dirty) {
    auto& record = st.usage[key];
    // Above the version written before, even if the clock stepped back.
    record.set_updated_unix_ms(std::max(now, record.updated_unix_ms() + 1));
    changed.push_back(record);
  }
  st.usage_dirty.clear();
  std::string error;
  auto written = st.settings.store->put_usage(changed, error);
  if (!error.empty())
    spdlog::error("apps: usage: {}", error);
  for (const auto& [peer, directory] : st.peers)
    send_usage(self, directory, written);
  auto current = apps::epoch_start(now, st.settings.epoch_ms);
  std::erase_if(st.usage, [&](const auto& entry) { return entry.first.second < current; });
}

void count_usage(directory_actor* self, const std::string& app_id,
                 const ev1::UsageCounters& counters) {
  auto& st = self->state;
  auto start = apps::epoch_start(unix_ms_now(), st.settings.epoch_ms);
  auto key = std::make_pair(app_id, start);
  auto& record = st.usage[key];
  if (record.app_id().empty()) {
    record.set_app_id(app_id);
    record.set_epoch_start_unix_ms(start);
    record.set_epoch_ms(st.settings.epoch_ms);
    record.set_peer_id(st.settings.peer_id);
  }
  apps::add(*record.mutable_usage(), counters);
  st.usage_dirty.insert(key);
}

void send_recent_audit(directory_actor* self, const caf::actor& to) {
  std::string error;
  auto since =
    unix_ms_now() - std::chrono::duration_cast<std::chrono::milliseconds>(audit_catch_up).count();
  auto events = self->state.settings.store->recent_audit(since, max_audit_catch_up, error);
  if (!error.empty())
    spdlog::error("apps: audit log: {}", error);
  send_audit(self, to, events);
}

/// Keeps `record` when it is newer than what this peer has. True if it did.
bool absorb(directory_actor* self, const cv1::AppRecord& record, std::string& error) {
  auto& st = self->state;
  auto it = st.records.find(record.app_id());
  if (it != st.records.end() && !apps::supersedes(record, it->second))
    return false;
  if (auto problem = st.settings.store->put_app(record); !problem.empty()) {
    error = "app store: " + problem;
    return false;
  }
  st.records[record.app_id()] = record;
  return true;
}

/// Writes a change made on this peer and tells every other peer.
std::string commit(directory_actor* self, const std::vector<cv1::AppRecord>& changes) {
  std::string error;
  std::vector<cv1::AppRecord> kept;
  for (const auto& record : changes)
    if (absorb(self, record, error))
      kept.push_back(record);
  if (!error.empty())
    return error;
  for (const auto& [peer, directory] : self->state.peers)
    send_records(self, directory, kept);
  publish(self);
  for (const auto& record : kept)
    spdlog::info("apps: app '{}' {} by {}", record.app_id(),
                 record.deleted() ? "deleted" : "written", record.updated_by());
  return {};
}

const cv1::AppRecord* live_record(const directory_state& st, std::string_view app_id) {
  auto it = st.records.find(app_id);
  return it == st.records.end() || it->second.deleted() ? nullptr : &it->second;
}

grpc_status invalid_app(const std::vector<apps::field_problem>& problems) {
  std::string message;
  for (const auto& problem : problems)
    message += (message.empty() ? "app." : "; app.") + problem.field + ": " + problem.problem;
  return make_status(grpc_code::invalid_argument, message);
}

/// A key id another app (not `app_id`) uses already.
std::string key_taken(const directory_state& st, const cfg::AppConfig& app) {
  for (const auto& key : app.keys())
    for (const auto& [id, record] : st.records)
      if (id != app.app_id() && !record.deleted())
        for (const auto& other : record.app().keys())
          if (other.key_id() == key.key_id())
            return "key_id '" + key.key_id() + "' is used by app '" + id + "'";
  return {};
}

class app_calls {
public:
  app_calls(directory_actor* self, unary_replies& replies, unary_call& call)
      : self_(self), st_(self->state), replies_(replies), call_(call) {}

  void handle(std::string_view method) {
    if (method == "CreateApp")
      create();
    else if (method == "UpdateApp")
      update();
    else if (method == "GetApp")
      get();
    else if (method == "ListApps")
      list();
    else if (method == "DeleteApp")
      remove();
    else if (method == "ReloadApps")
      reload();
    else if (method == "RotateAppKey")
      rotate_key();
    else if (method == "DeleteAppKey")
      delete_key();
    else if (method == "ListAuditEvents")
      list_audit();
    else if (method == "GetUsage")
      get_usage();
    else if (method == "ExportUsageReport")
      export_report();
    else
      fail(grpc_code::unimplemented, "unknown method " + call_.context.path);
  }

private:
  void fail(grpc_code code, std::string message) {
    replies_.fail(call_.context, make_status(code, std::move(message)));
  }

  /// The live app the request names, or null once the call failed.
  const cv1::AppRecord* existing(const std::string& app_id) {
    if (app_id.empty()) {
      fail(grpc_code::invalid_argument, "app_id is required");
      return nullptr;
    }
    const auto* record = live_record(st_, app_id);
    if (record == nullptr)
      fail(grpc_code::not_found, "unknown app '" + app_id.substr(0, 64) + "'");
    return record;
  }

  /// An API-made app, or null once the call failed (unknown, or owned by a config file).
  const cv1::AppRecord* changeable(const std::string& app_id) {
    const auto* record = existing(app_id);
    if (record != nullptr && record->source() == cv1::APP_SOURCE_FILE) {
      fail(grpc_code::failed_precondition,
           "app '" + app_id + "' comes from a config file (last written by " +
             record->updated_by() + "): change the file and call ReloadApps");
      return nullptr;
    }
    return record;
  }

  /// Validates and commits `app` as the app's next version; true once answered with
  /// an error.
  bool write(cfg::AppConfig app, const cv1::AppRecord* previous, cv1::AppRecord& out) {
    apps::apply_app_defaults(app);
    if (!app.hooks().script_file().empty()) {
      fail(grpc_code::invalid_argument,
           "app.hooks.script_file: is for config files; send the script's text in hooks.script");
      return true;
    }
    if (auto problems = apps::app_problems(app); !problems.empty()) {
      replies_.fail(call_.context, invalid_app(problems));
      return true;
    }
    if (auto taken = key_taken(st_, app); !taken.empty()) {
      fail(grpc_code::already_exists, std::move(taken));
      return true;
    }
    out = next_version(app.app_id(), previous, st_.settings.peer_id);
    out.set_source(cv1::APP_SOURCE_API);
    *out.mutable_app() = std::move(app);
    if (auto error = commit(self_, {out}); !error.empty()) {
      fail(grpc_code::unavailable, std::move(error));
      return true;
    }
    return false;
  }

  void create() {
    adm::CreateAppRequest request;
    if (!replies_.parse(call_, request))
      return;
    auto app = std::move(*request.mutable_app());
    if (live_record(st_, app.app_id()) != nullptr)
      return fail(grpc_code::already_exists, "app '" + app.app_id() + "' exists");
    adm::CreateAppResponse response;
    if (app.keys().empty() && !app.allow_unauthenticated()) {
      *app.add_keys() = apps::make_app_key(unix_ms_now());
      *response.mutable_key() = app.keys(0);
    }
    auto it = st_.records.find(app.app_id());
    cv1::AppRecord record;
    if (write(std::move(app), it == st_.records.end() ? nullptr : &it->second, record))
      return;
    *response.mutable_app() = app_view(record);
    replies_.reply(call_.context, response);
  }

  void update() {
    adm::UpdateAppRequest request;
    if (!replies_.parse(call_, request))
      return;
    const auto* previous = changeable(request.app().app_id());
    if (previous == nullptr)
      return;
    auto app = std::move(*request.mutable_app());
    *app.mutable_keys() = previous->app().keys();
    // A webhook secret left out means "keep it" (operators never see it to send it back).
    if (app.webhook().secret().empty() && app.webhook().url() == previous->app().webhook().url())
      app.mutable_webhook()->set_secret(previous->app().webhook().secret());
    cv1::AppRecord record;
    if (write(std::move(app), previous, record))
      return;
    adm::UpdateAppResponse response;
    *response.mutable_app() = app_view(record);
    replies_.reply(call_.context, response);
  }

  void get() {
    adm::GetAppRequest request;
    if (!replies_.parse(call_, request))
      return;
    if (const auto* record = existing(request.app_id())) {
      adm::GetAppResponse response;
      *response.mutable_app() = app_view(*record);
      replies_.reply(call_.context, response);
    }
  }

  void list() {
    adm::ListAppsRequest request;
    if (!replies_.parse(call_, request))
      return;
    adm::ListAppsResponse response;
    for (const auto& [id, record] : st_.records)
      if (!record.deleted())
        *response.add_apps() = app_view(record);
    replies_.reply(call_.context, response);
  }

  void remove() {
    adm::DeleteAppRequest request;
    if (!replies_.parse(call_, request))
      return;
    const auto* previous = changeable(request.app_id());
    if (previous == nullptr)
      return;
    auto record = next_version(request.app_id(), previous, st_.settings.peer_id);
    record.set_source(cv1::APP_SOURCE_API);
    record.set_deleted(true);
    if (auto error = commit(self_, {record}); !error.empty())
      return fail(grpc_code::unavailable, std::move(error));
    replies_.reply(call_.context, adm::DeleteAppResponse{});
  }

  void reload() {
    adm::ReloadAppsRequest request;
    if (!replies_.parse(call_, request))
      return;
    std::string error;
    auto file = st_.settings.read_file_apps ? st_.settings.read_file_apps(error)
                                            : std::optional<std::vector<cfg::AppConfig>>{};
    if (!file)
      return fail(grpc_code::failed_precondition,
                  "cannot reload the config file: " + (error.empty() ? "no reader" : error));
    adm::ReloadAppsResponse response;
    std::vector<cv1::AppRecord> changes;
    std::set<std::string> listed;
    for (auto& listed_app : *file) {
      auto app = recorded_file_app(listed_app, error);
      if (!app)
        return fail(grpc_code::failed_precondition, error);
      listed.insert(app->app_id());
      auto it = st_.records.find(app->app_id());
      const cv1::AppRecord* previous = it == st_.records.end() ? nullptr : &it->second;
      bool live = previous != nullptr && !previous->deleted();
      auto record = file_version(std::move(*app), previous, st_.settings.peer_id);
      if (!record) {
        response.add_unchanged(listed_app.app_id());
        continue;
      }
      (live ? response.add_updated() : response.add_created())->assign(record->app_id());
      changes.push_back(std::move(*record));
    }
    for (const auto& [id, record] : st_.records) {
      if (record.deleted() || record.source() != cv1::APP_SOURCE_FILE || listed.count(id) > 0)
        continue;
      auto tombstone = next_version(id, &record, st_.settings.peer_id);
      tombstone.set_source(cv1::APP_SOURCE_FILE);
      tombstone.set_deleted(true);
      changes.push_back(std::move(tombstone));
      response.add_deleted(id);
    }
    if (auto problem = commit(self_, changes); !problem.empty())
      return fail(grpc_code::unavailable, std::move(problem));
    replies_.reply(call_.context, response);
  }

  void rotate_key() {
    adm::RotateAppKeyRequest request;
    if (!replies_.parse(call_, request))
      return;
    const auto* previous = changeable(request.app_id());
    if (previous == nullptr)
      return;
    auto now = unix_ms_now();
    auto grace = request.grace_ms() == 0 ? default_rotation_grace_ms : request.grace_ms();
    cfg::AppConfig app = previous->app();
    // Expired keys go; the live ones get the grace period (or keep a sooner expiry).
    auto* keys = app.mutable_keys();
    for (int i = keys->size() - 1; i >= 0; --i) {
      auto& key = (*keys)[i];
      if (key.expires_unix_ms() != 0 && key.expires_unix_ms() <= now) {
        keys->DeleteSubrange(i, 1);
        continue;
      }
      if (key.expires_unix_ms() == 0 || key.expires_unix_ms() > now + grace)
        key.set_expires_unix_ms(now + grace);
    }
    if (static_cast<size_t>(keys->size()) >= apps::max_live_keys)
      return fail(grpc_code::failed_precondition,
                  "app '" + request.app_id() + "' has " + std::to_string(keys->size()) +
                    " live keys already; delete one (DeleteAppKey) or wait until one expires");
    auto key = apps::make_app_key(now);
    *keys->Add() = key;
    cv1::AppRecord record;
    if (write(std::move(app), previous, record))
      return;
    adm::RotateAppKeyResponse response;
    *response.mutable_app() = app_view(record);
    *response.mutable_key() = std::move(key);
    replies_.reply(call_.context, response);
  }

  void list_audit() {
    adm::ListAuditEventsRequest request;
    if (!replies_.parse(call_, request))
      return;
    if (existing(request.app_id()) == nullptr)
      return;
    if (request.page_size() > max_audit_page)
      return fail(grpc_code::invalid_argument,
                  "page_size is at most " + std::to_string(max_audit_page));
    uint32_t size = request.page_size() == 0 ? default_audit_page : request.page_size();
    std::string error;
    auto events =
      st_.settings.store->audit(request.app_id(), request.room_id(), request.since_unix_ms(),
                                request.page_token(), size + 1, error);
    if (!error.empty())
      return fail(grpc_code::unavailable, "app store: " + error);
    adm::ListAuditEventsResponse response;
    for (size_t i = 0; i < events.size() && i < size; ++i)
      *response.add_events() = std::move(events[i]);
    if (events.size() > size)
      response.set_next_page_token(response.events(static_cast<int>(size) - 1).event_id());
    replies_.reply(call_.context, response);
  }

  /// The app's epochs in [from, to) with every peer's counts (this peer's flushed first).
  bool usage_of(const std::string& app_id, int64_t from, int64_t& to,
                google::protobuf::RepeatedPtrField<ev1::EpochUsage>& epochs,
                ev1::UsageCounters& total) {
    if (existing(app_id) == nullptr)
      return false;
    if (to == 0)
      to = std::numeric_limits<int64_t>::max();
    if (to <= from) {
      fail(grpc_code::invalid_argument, "to_unix_ms must be after from_unix_ms (or 0: now)");
      return false;
    }
    flush_usage(self_);
    std::string error;
    auto records = st_.settings.store->usage(app_id, from, to, error);
    if (!error.empty()) {
      fail(grpc_code::unavailable, "app store: " + error);
      return false;
    }
    apps::sum_usage(records, app_id, from, to, epochs, total);
    return true;
  }

  void get_usage() {
    adm::GetUsageRequest request;
    if (!replies_.parse(call_, request))
      return;
    adm::GetUsageResponse response;
    int64_t to = request.to_unix_ms();
    if (usage_of(request.app_id(), request.from_unix_ms(), to, *response.mutable_epochs(),
                 *response.mutable_total()))
      replies_.reply(call_.context, response);
  }

  void export_report() {
    adm::ExportUsageReportRequest request;
    if (!replies_.parse(call_, request))
      return;
    if (!st_.settings.signer)
      return fail(grpc_code::failed_precondition, "this peer has no usage signing key");
    adm::ExportUsageReportResponse response;
    auto& report = *response.mutable_report();
    int64_t to = request.to_unix_ms() == 0 ? unix_ms_now() : request.to_unix_ms();
    if (!usage_of(request.app_id(), request.from_unix_ms(), to, *report.mutable_epochs(),
                  *report.mutable_total()))
      return;
    report.set_app_id(request.app_id());
    report.set_from_unix_ms(request.from_unix_ms());
    report.set_to_unix_ms(to);
    report.set_generated_unix_ms(unix_ms_now());
    report.set_generated_by(st_.settings.peer_id);
    report.set_signing_key_id(st_.settings.signer->key_id());
    std::string bytes;
    {
      google::protobuf::io::StringOutputStream stream(&bytes);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      report.SerializeToCodedStream(&coded);
    }
    response.set_signature(st_.settings.signer->sign(bytes));
    response.set_report_bytes(std::move(bytes));
    response.set_public_key_pem(st_.settings.signer->public_key_pem());
    replies_.reply(call_.context, response);
  }

  void delete_key() {
    adm::DeleteAppKeyRequest request;
    if (!replies_.parse(call_, request))
      return;
    const auto* previous = changeable(request.app_id());
    if (previous == nullptr)
      return;
    cfg::AppConfig app = previous->app();
    auto* keys = app.mutable_keys();
    auto it = std::find_if(keys->begin(), keys->end(), [&](const cfg::AppKey& key) {
      return key.key_id() == request.key_id();
    });
    if (it == keys->end())
      return fail(grpc_code::not_found, "app '" + request.app_id() + "' has no key '" +
                                          request.key_id().substr(0, 64) + "'");
    keys->erase(it);
    cv1::AppRecord record;
    if (write(std::move(app), previous, record))
      return;
    adm::DeleteAppKeyResponse response;
    *response.mutable_app() = app_view(record);
    replies_.reply(call_.context, response);
  }

  directory_actor* self_;
  directory_state& st_;
  unary_replies& replies_;
  unary_call& call_;
};

caf::behavior app_directory(directory_actor* self, app_directory_settings settings) {
  log_exceptions(self, "app directory");
  auto& st = self->state;
  for (auto& record : settings.records) {
    auto id = record.app_id();
    st.records.emplace(std::move(id), std::move(record));
  }
  settings.records.clear();
  st.settings = std::move(settings);
  st.catalog = catalog_of(all_records(st));
  // This peer's counts of the current epoch so far (a restart goes on from them rather
  // than overwriting them with smaller ones).
  {
    std::string error;
    auto now = unix_ms_now();
    auto current = apps::epoch_start(now, st.settings.epoch_ms);
    for (auto& record : st.settings.store->usage({}, current, current + 1, error))
      if (record.peer_id() == st.settings.peer_id) {
        auto key = std::make_pair(record.app_id(), record.epoch_start_unix_ms());
        st.usage[key] = std::move(record);
      }
    if (!error.empty())
      spdlog::error("apps: usage: {}", error);
  }
  send_later(self, usage_flush_interval, usage_flush_atom::value);
  return {
    [self](subscribe_atom, const caf::actor& subscriber) {
      self->state.subscribers.push_back(subscriber);
      self->send(subscriber, app_catalog_atom::value, self->state.catalog);
    },
    [self](cluster_view_atom, const cluster_view& view) {
      auto& st = self->state;
      std::map<std::string, caf::actor> peers;
      for (const auto& peer : view.live) {
        if (peer.peer_id == view.self_id || !peer.app_directory)
          continue;
        auto name = peer.peer_id + "@" + std::to_string(peer.incarnation);
        if (st.peers.count(name) == 0) {
          send_records(self, peer.app_directory, all_records(st));
          send_recent_audit(self, peer.app_directory);
          std::string error;
          auto since =
            unix_ms_now() -
            std::chrono::duration_cast<std::chrono::milliseconds>(usage_catch_up).count();
          send_usage(
            self, peer.app_directory,
            st.settings.store->usage({}, since, std::numeric_limits<int64_t>::max(), error));
        }
        peers.emplace(std::move(name), peer.app_directory);
      }
      st.peers = std::move(peers);
    },
    [self](join_wait_atom) -> caf::result<bool> {
      auto& st = self->state;
      if (st.heard_from_peer)
        return true;
      st.sync_waiters.push_back(self->make_response_promise());
      return caf::delegated<bool>{};
    },
    [self](app_records_atom, const std::string& bytes) {
      {
        auto& st = self->state;
        st.heard_from_peer = true;
        for (auto& waiter : st.sync_waiters)
          waiter.deliver(true);
        st.sync_waiters.clear();
        cv1::AppRecords message;
        if (!message.ParseFromString(bytes)) {
          spdlog::warn("apps: a peer sent malformed app records");
          return;
        }
        std::string error;
        bool changed = false;
        for (const auto& record : message.records())
          if (absorb(self, record, error)) {
            changed = true;
            spdlog::info("apps: app '{}' {} (version of {} from {})", record.app_id(),
                         record.deleted() ? "deleted" : "updated", record.updated_unix_ms(),
                         record.updated_by());
          }
        if (!error.empty())
          spdlog::error("apps: {}", error);
        if (changed)
          publish(self);
      }
    },
    [self](usage_atom, const std::string& app_id, const std::string& bytes) {
      ev1::UsageCounters counters;
      if (counters.ParseFromString(bytes) && !apps::empty(counters))
        count_usage(self, app_id, counters);
    },
    [self](usage_flush_atom) {
      flush_usage(self);
      send_later(self, usage_flush_interval, usage_flush_atom::value);
    },
    [self](peer_usage_atom, const std::string& bytes) {
      ev1::UsageRecords message;
      if (!message.ParseFromString(bytes)) {
        spdlog::warn("apps: a peer sent malformed usage records");
        return;
      }
      std::string error;
      self->state.settings.store->put_usage({message.records().begin(), message.records().end()},
                                            error);
      if (!error.empty())
        spdlog::error("apps: usage: {}", error);
    },
    [self](audit_atom, const std::string& bytes) {
      // From an app_policy of this peer: kept, and sent to every other peer.
      ev1::AppEvent event;
      if (!event.ParseFromString(bytes))
        return;
      keep_audit(self, {std::move(event)}, true);
    },
    [self](peer_audit_atom, const std::string& bytes) {
      cv1::AuditEvents message;
      if (!message.ParseFromString(bytes)) {
        spdlog::warn("apps: a peer sent malformed audit events");
        return;
      }
      keep_audit(self, {message.events().begin(), message.events().end()}, false);
    },
    [self](call_unary_atom, std::vector<unary_call>& batch) {
      unary_replies replies{self};
      for (auto& call : batch) {
        const auto& path = call.context.path;
        app_calls{self, replies, call}.handle(std::string_view{path}.substr(path.rfind('/') + 1));
      }
    },
    [](call_cancel_atom, int32_t) {},
  };
}

} // namespace

std::vector<cv1::AppRecord> app_directory_start(apps::app_store& store,
                                                const std::vector<cfg::AppConfig>& file,
                                                const std::string& peer_id, std::string& error) {
  auto stored = store.load_apps(error);
  if (!error.empty())
    return {};
  std::map<std::string, cv1::AppRecord> records;
  for (auto& record : stored) {
    auto id = record.app_id();
    records.emplace(std::move(id), std::move(record));
  }
  for (const auto& listed : file) {
    auto app = recorded_file_app(listed, error);
    if (!app)
      return {};
    auto it = records.find(app->app_id());
    const cv1::AppRecord* previous = it == records.end() ? nullptr : &it->second;
    auto record = file_version(std::move(*app), previous, peer_id);
    if (!record)
      continue;
    if (auto problem = store.put_app(*record); !problem.empty()) {
      error = "app store " + store.file().string() + ": " + problem;
      return {};
    }
    records[record->app_id()] = std::move(*record);
  }
  std::vector<cv1::AppRecord> out;
  for (auto& [id, record] : records)
    out.push_back(std::move(record));
  return out;
}

std::shared_ptr<const apps::app_catalog> catalog_of(const std::vector<cv1::AppRecord>& records) {
  std::vector<std::shared_ptr<const apps::app_definition>> definitions;
  for (const auto& record : records) {
    if (record.deleted())
      continue;
    // A record from a peer running a newer version may carry what this one cannot check;
    // it is left out here (and kept, for that peer's sake) rather than run half-understood.
    if (auto problems = apps::app_problems(record.app()); !problems.empty()) {
      spdlog::error("apps: app '{}' is not valid here ({}: {}); it is not served", record.app_id(),
                    problems.front().field, problems.front().problem);
      continue;
    }
    definitions.push_back(apps::compile_app(record.app()));
  }
  return std::make_shared<const apps::app_catalog>(std::move(definitions));
}

caf::actor spawn_app_directory(caf::actor_system& system, app_directory_settings settings) {
  return system.spawn(app_directory, std::move(settings));
}

} // namespace chroom::actors
