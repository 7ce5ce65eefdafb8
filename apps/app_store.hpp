#pragma once

// The app store: what a peer keeps on disk so that apps (and, with them, usage and the
// audit log) survive a restart of every peer. One SQLite database per peer,
// <data_dir>/apps.db, written by one actor (the app directory); peers keep their copies
// in step by exchanging records (actors/app_directory.hpp), not through the database.
//
// SQLite runs in WAL mode with synchronous=NORMAL: a committed change survives a crash
// of the process; a power loss may take the last transactions (the other peers hold them
// and send them back when the peer rejoins).

#include "chroom/apps/v1/events.pb.h"
#include "chroom/apps/v1/usage.pb.h"
#include "chroom/cluster/v1/cluster.pb.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

struct sqlite3;

namespace chroom::apps {

namespace cv1 = chroom::cluster::v1;

/// `a` is a newer version of its app than `b`: (updated_unix_ms, updated_by) is greater.
bool supersedes(const cv1::AppRecord& a, const cv1::AppRecord& b);

class app_store {
public:
  /// Opens (creating the directory and the database when missing) <dir>/apps.db. Returns
  /// null and sets `error` when that cannot be done.
  static std::unique_ptr<app_store> open(const std::filesystem::path& dir, std::string& error);
  ~app_store();
  app_store(const app_store&) = delete;
  app_store& operator=(const app_store&) = delete;

  const std::filesystem::path& file() const { return file_; }

  /// Every app record (tombstones included). Sets `error` on a read failure.
  std::vector<cv1::AppRecord> load_apps(std::string& error);
  /// Writes `record` in place of its app's; empty on success, else why not.
  std::string put_app(const cv1::AppRecord& record);

  /// Adds audit events; an event already kept (by event_id) is left as it is. Returns the
  /// events that were new; sets `error` on a write failure.
  std::vector<chroom::apps::v1::AppEvent>
  add_audit(const std::vector<chroom::apps::v1::AppEvent>& events, std::string& error);
  /// The app's audit events (of one room when `room_id` is not empty) from `since_unix_ms`
  /// on, oldest first, at most `limit`, after the event `after_event_id` (paging; empty:
  /// from the start).
  std::vector<chroom::apps::v1::AppEvent> audit(const std::string& app_id,
                                                const std::string& room_id, int64_t since_unix_ms,
                                                const std::string& after_event_id, size_t limit,
                                                std::string& error);
  /// Every audit event since `since_unix_ms`, newest last, at most `limit` (for a peer
  /// that joins).
  std::vector<chroom::apps::v1::AppEvent> recent_audit(int64_t since_unix_ms, size_t limit,
                                                       std::string& error);

  /// Writes usage records that are newer than the kept ones of the same (app, epoch,
  /// peer); returns those that were. Sets `error` on a write failure.
  std::vector<chroom::apps::v1::UsageRecord>
  put_usage(const std::vector<chroom::apps::v1::UsageRecord>& records, std::string& error);
  /// Usage records of epochs starting in [from, to): of one app, or of all when `app_id`
  /// is empty.
  std::vector<chroom::apps::v1::UsageRecord> usage(const std::string& app_id, int64_t from_unix_ms,
                                                   int64_t to_unix_ms, std::string& error);

private:
  app_store(sqlite3* db, std::filesystem::path file);
  std::string exec(const char* sql);

  sqlite3* db_;
  std::filesystem::path file_;
};

} // namespace chroom::apps
