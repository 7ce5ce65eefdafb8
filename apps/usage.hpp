#pragma once

// Usage metering, the pure part: epochs, adding counters up, reports, and the Ed25519 key
// that signs them. The app directory (actors/app_directory) collects and keeps the counts.

#include "chroom/apps/v1/usage.pb.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace chroom::apps {

namespace ev1 = chroom::apps::v1;

/// The first millisecond of the epoch holding `unix_ms` (epochs are aligned to the Unix
/// epoch, so every peer cuts them at the same instants).
int64_t epoch_start(int64_t unix_ms, int64_t epoch_ms);

/// `into` += `more`.
void add(ev1::UsageCounters& into, const ev1::UsageCounters& more);

/// True when nothing was counted.
bool empty(const ev1::UsageCounters& counters);

/// Adds up peers' records of one app into epochs starting in [from, to), oldest first,
/// with their total. Records of other apps are ignored.
void sum_usage(const std::vector<ev1::UsageRecord>& records, const std::string& app_id,
               int64_t from_unix_ms, int64_t to_unix_ms,
               google::protobuf::RepeatedPtrField<ev1::EpochUsage>& epochs,
               ev1::UsageCounters& total);

/// An Ed25519 key that signs usage reports.
class usage_signer {
public:
  /// Reads the PEM private key in `file`; when `create` and the file does not exist, makes
  /// a key and writes it there (mode 0600). Null with `error` set when neither works.
  static std::unique_ptr<usage_signer> open(const std::filesystem::path& file, bool create,
                                            std::string& error);
  ~usage_signer();
  usage_signer(const usage_signer&) = delete;
  usage_signer& operator=(const usage_signer&) = delete;

  /// The 64-byte Ed25519 signature of `bytes`.
  std::string sign(std::string_view bytes) const;
  /// The public key, PEM (SubjectPublicKeyInfo).
  const std::string& public_key_pem() const { return public_pem_; }
  /// First 16 hex digits of SHA-256 of the public key (DER).
  const std::string& key_id() const { return key_id_; }

private:
  explicit usage_signer(void* key);
  void* key_; // EVP_PKEY*
  std::string public_pem_;
  std::string key_id_;
};

/// Checks an Ed25519 signature with a PEM public key (for tests and tools).
bool verify_usage_signature(const std::string& public_key_pem, std::string_view bytes,
                            std::string_view signature);

} // namespace chroom::apps
