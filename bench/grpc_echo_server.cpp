// The grpc++ reference server of the gateway benchmark (bench/gateway_bench).
//
// Serves chroom.diag.v1.Diagnostics/Echo as fast as idiomatic grpc++ 1.51 allows, so that the
// orchestrator's own HTTP/2 gateway is compared with the best a stock gRPC stack does on the
// same machine, not with a strawman. Two server styles, chosen with --api:
//
//   async     (default) the CompletionQueue API: one ServerCompletionQueue per thread, each
//             thread keeps a fixed pool of Echo calls requested on its queue and recycles a
//             call's slot as soon as its Finish completes. This is the shape of grpc's own
//             qps benchmark server (test/cpp/qps/server_async.cc).
//   callback  the reactor API: Echo answers inline with the default unary reactor; grpc++
//             runs it on its own internal threads, so --threads is ignored.
//
// Measured on the shared 2-core box (h2load -c8 -m32 -t1, run alternately): both reach about
// the same req/s (70k-110k, the spread is the box's noise), and async needs less server CPU
// per call (about 9.3 µs against 9-14 µs), so async is the default. More threads or
// GRPC_ARG_MINIMAL_STACK changed nothing measurable. See bench/README.md.
//
// Only Echo has a handler. The other Diagnostics methods are marked "generic" and fall through,
// like any unknown method, to a generic service that answers UNIMPLEMENTED (the same status a
// default grpc++ method gives). A default (synchronous) method would instead make grpc++ start
// its synchronous-server thread pool, whose pollers compete with ours for the two cores.
//
// Usage: chroom-bench-grpc-echo [--port P] [--threads N] [--api async|callback]
// Binds 127.0.0.1 only (insecure credentials). --port 0 picks a free port. Prints
// "listening on 127.0.0.1:P" once calls are accepted; exits cleanly on SIGTERM or SIGINT.

#include "chroom/diag/v1/diagnostics.grpc.pb.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <memory>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <signal.h>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace diag = chroom::diag::v1;

// Echo calls kept requested on each completion queue. The benchmark keeps at most
// connections × streams (8 × 32 = 256) calls in flight, spread over all queues; a queue with
// no requested call left makes grpc++ park incoming calls until one is requested again.
constexpr int calls_per_queue = 512;

// How long in-flight calls may run once SIGTERM/SIGINT arrived.
constexpr auto shutdown_grace = std::chrono::seconds(2);

// Echo async; every other method left to the generic service (see the file comment).
using async_service = diag::Diagnostics::WithAsyncMethod_Echo<
  diag::Diagnostics::WithGenericMethod_EchoStream<diag::Diagnostics::WithGenericMethod_EchoRepeat<
    diag::Diagnostics::WithGenericMethod_EchoCollect<
      diag::Diagnostics::WithGenericMethod_GetCounters<diag::Diagnostics::Service>>>>>;

using callback_base = diag::Diagnostics::WithCallbackMethod_Echo<
  diag::Diagnostics::WithGenericMethod_EchoStream<diag::Diagnostics::WithGenericMethod_EchoRepeat<
    diag::Diagnostics::WithGenericMethod_EchoCollect<
      diag::Diagnostics::WithGenericMethod_GetCounters<diag::Diagnostics::Service>>>>>;

void echo_into(const diag::EchoRequest& request, diag::EchoResponse& response) {
  response.set_payload(request.payload());
  response.set_text(request.text());
}

// The callback-API server: Echo finishes inline, on grpc++'s own threads.
class callback_service final : public callback_base {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const diag::EchoRequest* request,
                                 diag::EchoResponse* response) override {
    echo_into(*request, *response);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// One completion queue, the thread that drains it and the Echo calls requested on it.
class async_queue {
public:
  async_queue(async_service& service, grpc::AsyncGenericService& unimplemented,
              std::unique_ptr<grpc::ServerCompletionQueue> queue)
      : service_(service), unimplemented_service_(unimplemented), queue_(std::move(queue)),
        slots_(calls_per_queue) {}

  // Requests the first calls; before the worker thread starts.
  void start() {
    for (auto& slot : slots_)
      request(slot);
    request(unimplemented_);
  }

  // The worker thread's loop: returns once the queue is shut down and drained.
  void run() {
    void* tag = nullptr;
    bool ok = false;
    while (queue_->Next(&tag, &ok)) {
      if (tag == &unimplemented_)
        on_event(unimplemented_, ok);
      else
        on_event(*static_cast<call_slot*>(tag), ok);
    }
  }

  // After this no call is requested any more, so the queue can be shut down safely
  // (a request on a shut-down queue is a grpc++ assertion failure).
  void stop_requesting() {
    std::lock_guard guard{mutex_};
    stopping_ = true;
  }

  void shutdown_queue() { queue_->Shutdown(); }

private:
  // One call in its two states: requested (waiting for a client) and finishing (response
  // sent, waiting for grpc++ to be done with it). The messages outlive the call so their
  // string buffers are reused; ServerContext and the writer cannot be reused, so they are
  // rebuilt in place.
  struct call_slot {
    struct per_call {
      // A constructor, not member initializers: clang does not see a nested class with
      // member initializers as default-constructible inside its enclosing class.
      per_call() : writer(&context) {}
      grpc::ServerContext context;
      grpc::ServerAsyncResponseWriter<diag::EchoResponse> writer;
    };
    std::optional<per_call> call;
    diag::EchoRequest request;
    diag::EchoResponse response;
    bool finishing = false;
  };

  // A call of any method but Echo; one per queue is enough, nobody benchmarks them.
  struct unimplemented_slot {
    struct per_call {
      per_call() : stream(&context) {}
      grpc::GenericServerContext context;
      grpc::GenericServerAsyncReaderWriter stream;
    };
    std::optional<per_call> call;
    bool finishing = false;
  };

  void request(call_slot& slot) {
    slot.call.emplace();
    slot.finishing = false;
    service_.RequestEcho(&slot.call->context, &slot.request, &slot.call->writer, queue_.get(),
                         queue_.get(), &slot);
  }

  void request(unimplemented_slot& slot) {
    slot.call.emplace();
    slot.finishing = false;
    unimplemented_service_.RequestCall(&slot.call->context, &slot.call->stream, queue_.get(),
                                       queue_.get(), &slot);
  }

  void on_event(unimplemented_slot& slot, bool ok) {
    if (ok && !slot.finishing) {
      slot.finishing = true;
      slot.call->stream.Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                            "Method not implemented by the benchmark server: " +
                                              slot.call->context.method()),
                               &slot);
      return;
    }
    recycle(slot);
  }

  // The call in the slot is over: request the next one unless the server is stopping.
  template <class Slot> void recycle(Slot& slot) {
    std::lock_guard guard{mutex_};
    if (stopping_)
      slot.call.reset();
    else
      request(slot);
  }

  void on_event(call_slot& slot, bool ok) {
    if (ok && !slot.finishing) {
      // A client called: answer at once.
      echo_into(slot.request, slot.response);
      slot.finishing = true;
      slot.call->writer.Finish(slot.response, grpc::Status::OK, &slot);
      return;
    }
    // The call is over (answered, cancelled by the client, or the server is shutting down
    // and the request was withdrawn): free the slot and wait for the next client.
    recycle(slot);
  }

  async_service& service_;
  grpc::AsyncGenericService& unimplemented_service_;
  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::vector<call_slot> slots_;
  unimplemented_slot unimplemented_;
  // Taken per completed call; uncontended except at shutdown.
  std::mutex mutex_;
  bool stopping_ = false;
};

struct options {
  int port = 0;
  int threads = 2;
  bool callback_api = false;
};

constexpr const char* usage_line =
  "usage: chroom-bench-grpc-echo [--port P] [--threads N] [--api async|callback]\n";

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "chroom-bench-grpc-echo: %s\n%s", why, usage_line);
  std::exit(2);
}

int parse_int(std::string_view text, int min, int max, const char* flag) {
  int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < min || value > max)
    usage((std::string{"bad value for "} + flag + ": " + std::string{text}).c_str());
  return value;
}

options parse_options(int argc, char** argv) {
  options result;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::printf("Serves chroom.diag.v1.Diagnostics/Echo on 127.0.0.1 with grpc++ (the "
                  "reference of bench/gateway_bench).\n%s"
                  "  --port P      TCP port, 0 (default) picks a free one\n"
                  "  --threads N   completion queues and their threads (async API); default 2\n"
                  "  --api A       async (default) or callback\n",
                  usage_line);
      std::exit(0);
    }
    if (i + 1 >= argc)
      usage((std::string{"missing value for "} + argv[i]).c_str());
    std::string_view value = argv[++i];
    if (flag == "--port")
      result.port = parse_int(value, 0, 65535, "--port");
    else if (flag == "--threads")
      result.threads = parse_int(value, 1, 256, "--threads");
    else if (flag == "--api" && (value == "async" || value == "callback"))
      result.callback_api = value == "callback";
    else
      usage((std::string{"unknown option "} + argv[i - 1] + " " + std::string{value}).c_str());
  }
  return result;
}

void configure(grpc::ServerBuilder& builder, const options& opts, int& bound_port) {
  builder.AddListeningPort("127.0.0.1:" + std::to_string(opts.port),
                           grpc::InsecureServerCredentials(), &bound_port);
  // grpc enables SO_REUSEPORT by default, which would let a second server silently share a
  // port that is already taken; the benchmark wants a clear bind error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
}

void announce(int port) {
  std::printf("listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);
}

// Blocks until SIGTERM or SIGINT. The signals are blocked in every thread (grpc's included,
// which inherit the mask), so only this sigwait sees them.
void wait_for_stop_signal(const sigset_t& stop_signals) {
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
}

int run_callback(const options& opts, const sigset_t& stop_signals) {
  callback_service service;
  // Its default reactor answers UNIMPLEMENTED.
  grpc::CallbackGenericService unimplemented;
  grpc::ServerBuilder builder;
  int port = 0;
  configure(builder, opts, port);
  builder.RegisterService(&service);
  builder.RegisterCallbackGenericService(&unimplemented);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "chroom-bench-grpc-echo: cannot listen on 127.0.0.1:%d\n", opts.port);
    return 1;
  }
  announce(port);
  wait_for_stop_signal(stop_signals);
  server->Shutdown(std::chrono::system_clock::now() + shutdown_grace);
  server->Wait();
  return 0;
}

int run_async(const options& opts, const sigset_t& stop_signals) {
  async_service service;
  grpc::AsyncGenericService unimplemented;
  grpc::ServerBuilder builder;
  int port = 0;
  configure(builder, opts, port);
  builder.RegisterService(&service);
  builder.RegisterAsyncGenericService(&unimplemented);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> raw_queues;
  raw_queues.reserve(opts.threads);
  for (int i = 0; i < opts.threads; ++i)
    raw_queues.push_back(builder.AddCompletionQueue());
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "chroom-bench-grpc-echo: cannot listen on 127.0.0.1:%d\n", opts.port);
    return 1;
  }

  std::vector<std::unique_ptr<async_queue>> queues;
  queues.reserve(raw_queues.size());
  for (auto& raw : raw_queues)
    queues.push_back(std::make_unique<async_queue>(service, unimplemented, std::move(raw)));
  std::vector<std::thread> workers;
  for (auto& queue : queues) {
    queue->start();
    workers.emplace_back([&q = *queue] { q.run(); });
  }
  announce(port);

  wait_for_stop_signal(stop_signals);
  // Order matters: stop re-requesting calls, let the server finish or cancel what is in
  // flight (the workers keep draining meanwhile), and only then shut the queues down.
  for (auto& queue : queues)
    queue->stop_requesting();
  server->Shutdown(std::chrono::system_clock::now() + shutdown_grace);
  for (auto& queue : queues)
    queue->shutdown_queue();
  for (auto& worker : workers)
    worker.join();
  server.reset(); // the server goes before its queues, as in grpc++'s own examples
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  const options opts = parse_options(argc, argv);

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // Before any thread exists, so every thread inherits the mask.
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  return opts.callback_api ? run_callback(opts, stop_signals) : run_async(opts, stop_signals);
}
