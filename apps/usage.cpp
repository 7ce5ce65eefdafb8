#include "apps/usage.hpp"

#include <cstdio>
#include <map>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <set>
#include <sys/stat.h>

namespace chroom::apps {
namespace {

EVP_PKEY* as_key(void* key) {
  return static_cast<EVP_PKEY*>(key);
}

std::string public_pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio != nullptr && PEM_write_bio_PUBKEY(bio, key) == 1) {
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    out.assign(data, static_cast<size_t>(size));
  }
  BIO_free(bio);
  return out;
}

std::string key_id_of(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int size = i2d_PUBKEY(key, &der);
  if (size <= 0)
    return {};
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(size), digest);
  OPENSSL_free(der);
  char hex[17];
  for (int i = 0; i < 8; ++i)
    std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return std::string(hex, 16);
}

} // namespace

int64_t epoch_start(int64_t unix_ms, int64_t epoch_ms) {
  if (epoch_ms <= 0)
    return unix_ms;
  auto start = unix_ms - unix_ms % epoch_ms;
  return unix_ms < 0 && unix_ms % epoch_ms != 0 ? start - epoch_ms : start;
}

void add(ev1::UsageCounters& into, const ev1::UsageCounters& more) {
  into.set_participant_minutes(into.participant_minutes() + more.participant_minutes());
  into.set_rooms(into.rooms() + more.rooms());
  into.set_relay_links(into.relay_links() + more.relay_links());
  into.set_bytes_in(into.bytes_in() + more.bytes_in());
  into.set_bytes_out(into.bytes_out() + more.bytes_out());
}

bool empty(const ev1::UsageCounters& counters) {
  return counters.participant_minutes() == 0 && counters.rooms() == 0 &&
         counters.relay_links() == 0 && counters.bytes_in() == 0 && counters.bytes_out() == 0;
}

void sum_usage(const std::vector<ev1::UsageRecord>& records, const std::string& app_id,
               int64_t from_unix_ms, int64_t to_unix_ms,
               google::protobuf::RepeatedPtrField<ev1::EpochUsage>& epochs,
               ev1::UsageCounters& total) {
  std::map<int64_t, ev1::EpochUsage> by_start;
  std::map<int64_t, std::set<std::string>> peers;
  for (const auto& record : records) {
    if (record.app_id() != app_id || record.epoch_start_unix_ms() < from_unix_ms ||
        record.epoch_start_unix_ms() >= to_unix_ms)
      continue;
    auto& epoch = by_start[record.epoch_start_unix_ms()];
    epoch.set_epoch_start_unix_ms(record.epoch_start_unix_ms());
    epoch.set_epoch_ms(record.epoch_ms());
    add(*epoch.mutable_usage(), record.usage());
    peers[record.epoch_start_unix_ms()].insert(record.peer_id());
    add(total, record.usage());
  }
  for (auto& [start, epoch] : by_start) {
    for (const auto& peer : peers[start])
      epoch.add_peers(peer);
    *epochs.Add() = std::move(epoch);
  }
}

usage_signer::usage_signer(void* key)
    : key_(key), public_pem_(public_pem_of(as_key(key))), key_id_(key_id_of(as_key(key))) {}

usage_signer::~usage_signer() {
  EVP_PKEY_free(as_key(key_));
}

std::unique_ptr<usage_signer> usage_signer::open(const std::filesystem::path& file, bool create,
                                                 std::string& error) {
  if (FILE* in = std::fopen(file.c_str(), "r")) {
    EVP_PKEY* key = PEM_read_PrivateKey(in, nullptr, nullptr, nullptr);
    std::fclose(in);
    if (key == nullptr || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
      EVP_PKEY_free(key);
      error = file.string() + " holds no Ed25519 private key (PEM)";
      return nullptr;
    }
    return std::unique_ptr<usage_signer>(new usage_signer(key));
  }
  if (!create) {
    error = "cannot read " + file.string();
    return nullptr;
  }
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) {
    error = "OpenSSL cannot make an Ed25519 key";
    return nullptr;
  }
  // Written readable by the owner only, from the start.
  auto previous = ::umask(077);
  FILE* out = std::fopen(file.c_str(), "w");
  ::umask(previous);
  bool written =
    out != nullptr && PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  if (out != nullptr)
    written = std::fclose(out) == 0 && written;
  if (!written) {
    EVP_PKEY_free(key);
    error = "cannot write " + file.string();
    return nullptr;
  }
  return std::unique_ptr<usage_signer>(new usage_signer(key));
}

std::string usage_signer::sign(std::string_view bytes) const {
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  std::string signature(64, '\0');
  size_t length = signature.size();
  if (context == nullptr ||
      EVP_DigestSignInit(context, nullptr, nullptr, nullptr, as_key(key_)) != 1 ||
      EVP_DigestSign(context, reinterpret_cast<unsigned char*>(signature.data()), &length,
                     reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()) != 1)
    signature.clear();
  else
    signature.resize(length);
  EVP_MD_CTX_free(context);
  return signature;
}

bool verify_usage_signature(const std::string& public_key_pem, std::string_view bytes,
                            std::string_view signature) {
  BIO* bio = BIO_new_mem_buf(public_key_pem.data(), static_cast<int>(public_key_pem.size()));
  EVP_PKEY* key = bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  bool ok = key != nullptr && context != nullptr &&
            EVP_DigestVerifyInit(context, nullptr, nullptr, nullptr, key) == 1 &&
            EVP_DigestVerify(context, reinterpret_cast<const unsigned char*>(signature.data()),
                             signature.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                             bytes.size()) == 1;
  EVP_MD_CTX_free(context);
  EVP_PKEY_free(key);
  return ok;
}

} // namespace chroom::apps
