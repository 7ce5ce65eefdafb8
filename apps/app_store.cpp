#include "apps/app_store.hpp"

#include <sqlite3.h>
#include <system_error>

namespace chroom::apps {
namespace {

constexpr const char* schema = R"sql(
  PRAGMA journal_mode = WAL;
  PRAGMA synchronous = NORMAL;
  CREATE TABLE IF NOT EXISTS apps (
    app_id TEXT PRIMARY KEY,
    record BLOB NOT NULL          -- chroom.cluster.v1.AppRecord
  );
  CREATE TABLE IF NOT EXISTS audit (
    event_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    occurred_unix_ms INTEGER NOT NULL,
    event BLOB NOT NULL           -- chroom.apps.v1.AppEvent
  );
  CREATE INDEX IF NOT EXISTS audit_by_app ON audit (app_id, occurred_unix_ms, event_id);
  CREATE TABLE IF NOT EXISTS usage (
    app_id TEXT NOT NULL,
    epoch_start_unix_ms INTEGER NOT NULL,
    peer_id TEXT NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    record BLOB NOT NULL,         -- chroom.apps.v1.UsageRecord
    PRIMARY KEY (app_id, epoch_start_unix_ms, peer_id)
  );
)sql";

// Another connection (a second peer started on the same data_dir by mistake) holding the
// write lock: wait this long before failing the write.
constexpr int busy_timeout_ms = 2000;

/// Finalizes a statement however the function leaves.
struct statement {
  sqlite3_stmt* handle = nullptr;
  ~statement() { sqlite3_finalize(handle); }
};

} // namespace

bool supersedes(const cv1::AppRecord& a, const cv1::AppRecord& b) {
  if (a.updated_unix_ms() != b.updated_unix_ms())
    return a.updated_unix_ms() > b.updated_unix_ms();
  return a.updated_by() > b.updated_by();
}

std::unique_ptr<app_store> app_store::open(const std::filesystem::path& dir, std::string& error) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    error = "cannot create " + dir.string() + ": " + ec.message();
    return nullptr;
  }
  auto file = dir / "apps.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    error = "cannot open " + file.string() + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return nullptr;
  }
  sqlite3_busy_timeout(db, busy_timeout_ms);
  std::unique_ptr<app_store> store{new app_store(db, file)};
  if (auto problem = store->exec(schema); !problem.empty()) {
    error = "cannot set up " + file.string() + ": " + problem;
    return nullptr;
  }
  // Apps carry secrets: only the peer's user may read them.
  std::filesystem::permissions(
    file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
  return store;
}

app_store::app_store(sqlite3* db, std::filesystem::path file) : db_(db), file_(std::move(file)) {}

app_store::~app_store() {
  sqlite3_close(db_);
}

std::string app_store::exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) == SQLITE_OK)
    return {};
  std::string problem = message ? message : sqlite3_errmsg(db_);
  sqlite3_free(message);
  return problem;
}

std::vector<cv1::AppRecord> app_store::load_apps(std::string& error) {
  std::vector<cv1::AppRecord> records;
  statement select;
  if (sqlite3_prepare_v2(db_, "SELECT app_id, record FROM apps ORDER BY app_id", -1, &select.handle,
                         nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db_);
    return records;
  }
  int step;
  while ((step = sqlite3_step(select.handle)) == SQLITE_ROW) {
    cv1::AppRecord record;
    const void* bytes = sqlite3_column_blob(select.handle, 1);
    int size = sqlite3_column_bytes(select.handle, 1);
    if (!record.ParseFromArray(bytes, size)) {
      error = "the record of app '" +
              std::string{reinterpret_cast<const char*>(sqlite3_column_text(select.handle, 0))} +
              "' is corrupt";
      continue;
    }
    records.push_back(std::move(record));
  }
  if (step != SQLITE_DONE)
    error = sqlite3_errmsg(db_);
  return records;
}

namespace {

std::vector<chroom::apps::v1::AppEvent> read_events(sqlite3* db, sqlite3_stmt* select,
                                                    std::string& error) {
  std::vector<chroom::apps::v1::AppEvent> events;
  int step;
  while ((step = sqlite3_step(select)) == SQLITE_ROW) {
    chroom::apps::v1::AppEvent event;
    if (event.ParseFromArray(sqlite3_column_blob(select, 0), sqlite3_column_bytes(select, 0)))
      events.push_back(std::move(event));
    else
      error = "a corrupt audit event";
  }
  if (step != SQLITE_DONE)
    error = sqlite3_errmsg(db);
  return events;
}

void bind_text(sqlite3_stmt* statement, int index, const std::string& text) {
  sqlite3_bind_text(statement, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

} // namespace

std::vector<chroom::apps::v1::AppEvent>
app_store::add_audit(const std::vector<chroom::apps::v1::AppEvent>& events, std::string& error) {
  std::vector<chroom::apps::v1::AppEvent> added;
  if (events.empty())
    return added;
  if (auto problem = exec("BEGIN"); !problem.empty()) {
    error = problem;
    return added;
  }
  statement insert;
  if (sqlite3_prepare_v2(db_,
                         "INSERT OR IGNORE INTO audit (event_id, app_id, room_id, "
                         "occurred_unix_ms, event) VALUES (?1, ?2, ?3, ?4, ?5)",
                         -1, &insert.handle, nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db_);
    exec("ROLLBACK");
    return added;
  }
  for (const auto& event : events) {
    std::string bytes;
    event.SerializeToString(&bytes);
    sqlite3_reset(insert.handle);
    bind_text(insert.handle, 1, event.event_id());
    bind_text(insert.handle, 2, event.app_id());
    bind_text(insert.handle, 3, event.room_id());
    sqlite3_bind_int64(insert.handle, 4, event.occurred_unix_ms());
    sqlite3_bind_blob(insert.handle, 5, bytes.data(), static_cast<int>(bytes.size()),
                      SQLITE_TRANSIENT);
    if (sqlite3_step(insert.handle) != SQLITE_DONE) {
      error = sqlite3_errmsg(db_);
      exec("ROLLBACK");
      return {};
    }
    if (sqlite3_changes(db_) > 0)
      added.push_back(event);
  }
  if (auto problem = exec("COMMIT"); !problem.empty()) {
    error = problem;
    return {};
  }
  return added;
}

std::vector<chroom::apps::v1::AppEvent>
app_store::audit(const std::string& app_id, const std::string& room_id, int64_t since_unix_ms,
                 const std::string& after_event_id, size_t limit, std::string& error) {
  // Paging by (occurred_unix_ms, event_id) of the last event of the previous page.
  int64_t after_ms = since_unix_ms - 1;
  std::string after_id;
  if (!after_event_id.empty()) {
    statement find;
    if (sqlite3_prepare_v2(db_, "SELECT occurred_unix_ms FROM audit WHERE event_id = ?1", -1,
                           &find.handle, nullptr) == SQLITE_OK) {
      bind_text(find.handle, 1, after_event_id);
      if (sqlite3_step(find.handle) == SQLITE_ROW) {
        after_ms = sqlite3_column_int64(find.handle, 0);
        after_id = after_event_id;
      }
    }
  }
  statement select;
  if (sqlite3_prepare_v2(db_,
                         "SELECT event FROM audit WHERE app_id = ?1 AND (?2 = '' OR room_id = ?2) "
                         "AND (occurred_unix_ms > ?3 OR (occurred_unix_ms = ?3 AND event_id > ?4)) "
                         "ORDER BY occurred_unix_ms, event_id LIMIT ?5",
                         -1, &select.handle, nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db_);
    return {};
  }
  bind_text(select.handle, 1, app_id);
  bind_text(select.handle, 2, room_id);
  sqlite3_bind_int64(select.handle, 3, after_ms);
  bind_text(select.handle, 4, after_id);
  sqlite3_bind_int64(select.handle, 5, static_cast<sqlite3_int64>(limit));
  return read_events(db_, select.handle, error);
}

std::vector<chroom::apps::v1::AppEvent> app_store::recent_audit(int64_t since_unix_ms, size_t limit,
                                                                std::string& error) {
  statement select;
  if (sqlite3_prepare_v2(db_,
                         "SELECT event FROM (SELECT event, occurred_unix_ms FROM audit WHERE "
                         "occurred_unix_ms >= ?1 ORDER BY occurred_unix_ms DESC LIMIT ?2) "
                         "ORDER BY occurred_unix_ms",
                         -1, &select.handle, nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db_);
    return {};
  }
  sqlite3_bind_int64(select.handle, 1, since_unix_ms);
  sqlite3_bind_int64(select.handle, 2, static_cast<sqlite3_int64>(limit));
  return read_events(db_, select.handle, error);
}

std::vector<chroom::apps::v1::UsageRecord>
app_store::put_usage(const std::vector<chroom::apps::v1::UsageRecord>& records,
                     std::string& error) {
  std::vector<chroom::apps::v1::UsageRecord> written;
  if (records.empty())
    return written;
  if (auto problem = exec("BEGIN"); !problem.empty()) {
    error = problem;
    return written;
  }
  statement upsert;
  if (sqlite3_prepare_v2(
        db_,
        "INSERT INTO usage (app_id, epoch_start_unix_ms, peer_id, updated_unix_ms, "
        "record) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (app_id, "
        "epoch_start_unix_ms, peer_id) DO UPDATE SET updated_unix_ms = "
        "excluded.updated_unix_ms, record = excluded.record WHERE "
        "excluded.updated_unix_ms > usage.updated_unix_ms",
        -1, &upsert.handle, nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db_);
    exec("ROLLBACK");
    return {};
  }
  for (const auto& record : records) {
    std::string bytes;
    record.SerializeToString(&bytes);
    sqlite3_reset(upsert.handle);
    bind_text(upsert.handle, 1, record.app_id());
    sqlite3_bind_int64(upsert.handle, 2, record.epoch_start_unix_ms());
    bind_text(upsert.handle, 3, record.peer_id());
    sqlite3_bind_int64(upsert.handle, 4, record.updated_unix_ms());
    sqlite3_bind_blob(upsert.handle, 5, bytes.data(), static_cast<int>(bytes.size()),
                      SQLITE_TRANSIENT);
    if (sqlite3_step(upsert.handle) != SQLITE_DONE) {
      error = sqlite3_errmsg(db_);
      exec("ROLLBACK");
      return {};
    }
    if (sqlite3_changes(db_) > 0)
      written.push_back(record);
  }
  if (auto problem = exec("COMMIT"); !problem.empty()) {
    error = problem;
    return {};
  }
  return written;
}

std::vector<chroom::apps::v1::UsageRecord> app_store::usage(const std::string& app_id,
                                                            int64_t from_unix_ms,
                                                            int64_t to_unix_ms,
                                                            std::string& error) {
  std::vector<chroom::apps::v1::UsageRecord> records;
  statement select;
  if (sqlite3_prepare_v2(db_,
                         "SELECT record FROM usage WHERE (?1 = '' OR app_id = ?1) AND "
                         "epoch_start_unix_ms >= ?2 AND epoch_start_unix_ms < ?3 ORDER BY "
                         "epoch_start_unix_ms, app_id, peer_id",
                         -1, &select.handle, nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db_);
    return records;
  }
  bind_text(select.handle, 1, app_id);
  sqlite3_bind_int64(select.handle, 2, from_unix_ms);
  sqlite3_bind_int64(select.handle, 3, to_unix_ms);
  int step;
  while ((step = sqlite3_step(select.handle)) == SQLITE_ROW) {
    chroom::apps::v1::UsageRecord record;
    if (record.ParseFromArray(sqlite3_column_blob(select.handle, 0),
                              sqlite3_column_bytes(select.handle, 0)))
      records.push_back(std::move(record));
    else
      error = "a corrupt usage record";
  }
  if (step != SQLITE_DONE)
    error = sqlite3_errmsg(db_);
  return records;
}

std::string app_store::put_app(const cv1::AppRecord& record) {
  std::string bytes;
  record.SerializeToString(&bytes);
  statement upsert;
  if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO apps (app_id, record) VALUES (?1, ?2)", -1,
                         &upsert.handle, nullptr) != SQLITE_OK)
    return sqlite3_errmsg(db_);
  sqlite3_bind_text(upsert.handle, 1, record.app_id().data(),
                    static_cast<int>(record.app_id().size()), SQLITE_TRANSIENT);
  sqlite3_bind_blob(upsert.handle, 2, bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_TRANSIENT);
  if (sqlite3_step(upsert.handle) != SQLITE_DONE)
    return sqlite3_errmsg(db_);
  return {};
}

} // namespace chroom::apps
