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
  if (sqlite3_prepare_v2(db_, "SELECT app_id, record FROM apps ORDER BY app_id", -1, &select.handle, nullptr) !=
      SQLITE_OK) {
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
