#pragma once

// The app directory: one actor per peer that owns the apps. It keeps every app's newest
// record (chroom.cluster.v1.AppRecord) in the peer's app store (SQLite, data_dir), sends
// each change to the app directories of all other peers and every record to a peer that
// joins, keeps the newest version of each app it hears of (last writer wins, deletions
// are tombstones), and hands the services an immutable app catalog on every change.
//
// It answers AdminService's app methods (CreateApp, UpdateApp, GetApp, ListApps,
// DeleteApp, ReloadApps, RotateAppKey, DeleteAppKey), which the admin service passes on
// as calls.
//
// Messages:
//   (subscribe_atom, actor)         the actor gets (app_catalog_atom, catalog) now and on
//                                   every change
//   (cluster_view_atom, cluster_view)       from the membership actor
//   (app_records_atom, AppRecords bytes)    from another peer's directory
//   (join_wait_atom) -> bool         answered (true) once another peer's directory sent its
//                                    records: the peer has the cluster's apps (readiness)
//   (call_unary_atom, vector<unary_call>)   AdminService app methods
//   (audit_atom, AppEvent bytes)            an audit event of this peer (from an app_policy)
//   (peer_audit_atom, AuditEvents bytes)    ... of another peer
//   (usage_atom, app_id, UsageCounters bytes)   use counted on this peer (rooms, services,
//                                               the registry), added to the current epoch
//   (peer_usage_atom, UsageRecords bytes)   another peer's counts

#include "apps/app_catalog.hpp"
#include "apps/app_store.hpp"
#include "apps/usage.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace chroom::actors {

/// The apps of the peer's config file as read now, or nothing with `error` set.
using file_apps_reader =
  std::function<std::optional<std::vector<chroom::config::v1::AppConfig>>(std::string& error)>;

struct app_directory_settings {
  std::string peer_id;
  std::shared_ptr<apps::app_store> store;
  /// Records from the store with the config file's apps applied (app_directory_start).
  std::vector<apps::cv1::AppRecord> records;
  /// For ReloadApps.
  file_apps_reader read_file_apps;
  /// Usage metering: the epoch length and the key that signs reports.
  int64_t epoch_ms = 3'600'000;
  std::shared_ptr<const apps::usage_signer> signer;
};

/// Opens nothing: combines what the store holds with the apps of the config file (which
/// win over the stored versions of file apps; their script_file is read into script).
/// Returns the records to start with, writing changed ones to the store; sets `error` when
/// the store cannot be read or written or a script file cannot be read.
std::vector<apps::cv1::AppRecord>
app_directory_start(apps::app_store& store, const std::vector<chroom::config::v1::AppConfig>& file,
                    const std::string& peer_id, std::string& error);

/// The catalog of the live (not deleted) apps among `records`.
std::shared_ptr<const apps::app_catalog>
catalog_of(const std::vector<apps::cv1::AppRecord>& records);

caf::actor spawn_app_directory(caf::actor_system& system, app_directory_settings settings);

} // namespace chroom::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const chroom::apps::app_catalog>)
