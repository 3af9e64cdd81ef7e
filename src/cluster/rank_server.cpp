// A worker rank: says hello to rank 0, then runs the calls it sends on
// POOLS_RANK_THREADS threads (default 1: the main thread) until told to stop.
//
// There is no separate communication thread: whichever serving thread holds
// mpi_lock() reads the messages that arrived into the rank's queue and sends
// its replies. A heartbeat thread keeps rank 0 informed while every serving
// thread is busy in a long task, and handles withdrawals meanwhile.
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/core.h>

#include <pools/detail/remote_call.hpp>
#include <pools/registry.hpp>

#include "cluster/cluster_pool.hpp"
#include "cluster/mpi_session.hpp"
#include "core/diag.hpp"
#include "wire/frame.hpp"
#include "wire/remote_call.hpp"
#include "wire/reply.hpp"
#include "wire/serve.hpp"

namespace pools::detail {
namespace {

using Clock = std::chrono::steady_clock;
using wire::FrameKind;
using cluster::mpi_lock;

// How long MPI_Finalize may take at the end before the rank leaves without it.
constexpr auto finalize_limit = std::chrono::seconds(30);

// A call frame waiting to run; its payload lives in the message it came in.
struct Job {
  wire::FrameHeader header;
  std::shared_ptr<const std::string> message;
  std::string_view payload;
};

unsigned threads_from_env() {
  const char* v = std::getenv("POOLS_RANK_THREADS");
  if (!v || !*v) return 1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end || n < 1 || n > 4096) {
    write_line(fmt::format("POOLS_RANK_THREADS='{}' is not a number of threads from 1 to 4096; "
                           "using 1",
                           v));
    return 1;
  }
  return static_cast<unsigned>(n);
}

class RankServer {
public:
  RankServer() : threads_(threads_from_env()) {
    if (recovery_) {
      try {
        rank0_silence_limit_ = cluster::silence_from_env(ClusterOptions{}.silence_limit);
      } catch (const std::exception& e) {
        write_line(fmt::format("worker rank {}: {}; using {} ms", cluster::rank(), e.what(),
                               rank0_silence_limit_.count()));
      }
    }
  }

  [[noreturn]] void run() {
    say_hello();
    std::thread heartbeat([this] { beat(); });
    std::vector<std::thread> extra;
    for (unsigned i = 1; i < threads_; ++i) extra.emplace_back([this] { serve(); });
    serve();
    for (auto& t : extra) t.join();
    {
      std::lock_guard lock(done_mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    heartbeat.join();
    // Pools a task made on this rank, then goodbye.
    close_pools();
    {
      std::lock_guard lock(mpi_lock());
      std::string bye;
      wire::append_frame(bye, FrameKind::bye, 0, {});
      MPI_Send(bye.data(), static_cast<int>(bye.size()), MPI_BYTE, 0, cluster::tag_frames,
               cluster::comm());
      for (Out& o : sends_) MPI_Wait(&o.request, MPI_STATUS_IGNORE);
      sends_.clear();
    }
    std::fflush(nullptr);
    // MPI_Finalize waits for every rank; should one die after the stop was
    // sent, it would wait forever (under --enable-recovery): leave after a while.
    std::thread([] {
      std::this_thread::sleep_for(finalize_limit);
      write_line(fmt::format("worker rank {}: MPI_Finalize did not return within {} s; leaving "
                             "without it", cluster::rank(), finalize_limit.count()));
      std::_Exit(0);
    }).detach();
    cluster::finish_mpi(peers_lost_);
    std::exit(0);
  }

private:
  struct Out {
    std::string bytes;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  void say_hello() {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    int pid = ::getpid();
    std::string h = host, exe = wire::executable_identity();
    unsigned cores = static_cast<unsigned>(std::max(1, get_nprocs()));
    unsigned threads = threads_;
    std::string hello(wire::header_size, '\0');
    encode(hello, pid, h, exe, cores, threads);
    seal_frame(hello, FrameKind::hello, 0);
    std::lock_guard lock(mpi_lock());
    MPI_Send(hello.data(), static_cast<int>(hello.size()), MPI_BYTE, 0, cluster::tag_frames,
             cluster::comm());
    last_sent_ = last_heard_ = Clock::now();
  }

  // Holding mpi_lock: reads every message that arrived. Calls join the queue;
  // a withdrawal drops queued calls and tells rank 0 which.
  bool pump() {
    bool got = false;
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
      it = done ? sends_.erase(it) : std::next(it);
    }
    while (auto m = cluster::try_receive(0)) {
      got = true;
      last_heard_ = Clock::now();
      if (m->tag == cluster::tag_withdraw) {
        withdraw(m->bytes);
      } else if (m->tag == cluster::tag_frames) {
        take_frames(std::make_shared<const std::string>(std::move(m->bytes)));
      }
    }
    return got;
  }

  void take_frames(std::shared_ptr<const std::string> message) {
    // Frames are parsed in place: a message holds whole frames.
    std::lock_guard lock(queue_mutex_);
    std::size_t at = 0;
    try {
      while (at < message->size()) {
        if (message->size() - at < wire::header_size)
          throw wire::WireError(fmt::format("a truncated frame header at byte {}", at));
        const wire::FrameHeader h = wire::decode_header(message->data() + at);
        at += wire::header_size;
        if (message->size() - at < h.length)
          throw wire::WireError(fmt::format("a truncated frame at byte {}", at));
        const std::string_view payload(message->data() + at, h.length);
        at += h.length;
        switch (h.kind) {
          case FrameKind::call:
          case FrameKind::call_batch:
            queue_.push_back(Job{h, message, payload});
            break;
          case FrameKind::stop:
            stopping_ = true;
            peers_lost_ = !payload.empty() && payload[0] == 1;
            break;
          default:
            throw wire::WireError(
                fmt::format("unexpected {} frame from rank 0", wire::to_string(h.kind)));
        }
      }
    } catch (const std::exception& e) {
      // Rank 0 runs the same code: garbage means memory corruption there.
      write_line(fmt::format("worker rank {}: a bad message from rank 0: {}", cluster::rank(),
                             e.what()));
      MPI_Abort(MPI_COMM_WORLD, 4);
    }
  }

  void withdraw(const std::string& ids) {
    std::string dropped;
    {
      std::lock_guard lock(queue_mutex_);
      for (std::size_t at = 0; at + 8 <= ids.size(); at += 8) {
        std::uint64_t seq = 0;
        std::memcpy(&seq, ids.data() + at, 8);
        auto it = std::find_if(queue_.begin(), queue_.end(),
                               [&](const Job& j) { return j.header.task_id == seq; });
        if (it == queue_.end()) continue;  // running or done: its reply comes
        queue_.erase(it);
        dropped.append(ids.data() + at, 8);
      }
    }
    if (!dropped.empty()) send(cluster::tag_withdraw, std::move(dropped));
  }

  // Holding mpi_lock.
  void send(int tag, std::string bytes) {
    Out& o = sends_.emplace_back();
    o.bytes = std::move(bytes);
    MPI_Isend(o.bytes.data(), static_cast<int>(o.bytes.size()), MPI_BYTE, 0, tag, cluster::comm(),
              &o.request);
    last_sent_ = Clock::now();
  }

  std::optional<Job> pop() {
    std::lock_guard lock(queue_mutex_);
    if (queue_.empty()) return std::nullopt;
    Job j = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    return j;
  }

  // One serving thread: runs the queued calls, and sends their replies
  // together once the queue is empty (or much is waiting).
  void serve() {
    cluster::Backoff backoff;
    std::string out, replies;
    for (unsigned round = 0;; ++round) {
      // Probe for messages when there is nothing to run, and now and then
      // between calls (MPI's progress costs a microsecond a probe).
      if (queue_empty()) {
        std::lock_guard lock(mpi_lock());
        pump();
      } else if (round % 16 == 0) {
        std::unique_lock lock(mpi_lock(), std::try_to_lock);
        if (lock.owns_lock()) pump();
      }
      if (std::optional<Job> job = pop()) {
        backoff.reset();
        const wire::Frame f{job->header, job->payload};
        std::size_t at = 0;
        try {
          at = serve_frame(f, out);
        } catch (const std::exception& e) {
          write_line(fmt::format("worker rank {}: a malformed call batch: {}", cluster::rank(),
                                 e.what()));
          MPI_Abort(MPI_COMM_WORLD, 4);
        }
        replies.append(out, at);
        bool more;
        {
          std::lock_guard lock(queue_mutex_);
          --running_;
          more = !queue_.empty();
        }
        if (!more || replies.size() > (256u << 10)) {
          std::lock_guard lock(mpi_lock());
          send(cluster::tag_frames, std::move(replies));
          replies.clear();
        }
        continue;
      }
      {
        std::lock_guard lock(queue_mutex_);
        if (stopping_ && queue_.empty() && running_ == 0) return;
      }
      backoff.pause();
    }
  }

  bool queue_empty() {
    std::lock_guard lock(queue_mutex_);
    return queue_.empty();
  }

  // Every 100 ms: reads what arrived (a withdrawal while all serving threads
  // are busy), and says "alive" when nothing else was sent for a while.
  void beat() {
    std::unique_lock done(done_mutex_);
    while (!done_cv_.wait_for(done, std::chrono::milliseconds(100), [&] { return done_; })) {
      std::lock_guard lock(mpi_lock());
      pump();
      const auto now = Clock::now();
      if (now - last_sent_ >= cluster::heartbeat_interval) send(cluster::tag_heartbeat, {});
      if (recovery_ && now - last_heard_ > rank0_silence_limit_) leave_without_rank0(now);
    }
  }

  // Under --enable-recovery a dead rank 0 does not end the job, and nobody
  // would ever tell this rank to stop: it leaves by itself, without
  // MPI_Finalize (which would wait for rank 0) and without waiting for its
  // tasks (their results have nowhere to go).
  [[noreturn]] void leave_without_rank0(Clock::time_point now) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_);
    write_line(fmt::format("worker rank {}: rank 0 sent nothing for {} ms (its silence limit is "
                           "{} ms, POOLS_CLUSTER_SILENCE_MS); under mpirun --enable-recovery "
                           "that means it died: leaving",
                           cluster::rank(), ms.count(), rank0_silence_limit_.count()));
    std::fflush(nullptr);
    std::_Exit(3);
  }

  const unsigned threads_;
  std::mutex queue_mutex_;
  std::deque<Job> queue_;
  unsigned running_ = 0;
  bool stopping_ = false;
  bool peers_lost_ = false;  // the stop said a rank was lost: no MPI_Finalize
  std::list<Out> sends_;  // under mpi_lock
  Clock::time_point last_sent_{};  // under mpi_lock
  Clock::time_point last_heard_{};  // under mpi_lock: the last message from rank 0
  const bool recovery_ = cluster::recovery_enabled();  // rank 0 sends heartbeats
  std::chrono::milliseconds rank0_silence_limit_ = ClusterOptions{}.silence_limit;
  std::mutex done_mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
};

}  // namespace

[[noreturn]] void serve_rank() {
  diag("worker rank {} of {}: serving", cluster::rank(), cluster::world_size());
  static RankServer* server = new RankServer;  // lives until exit
  server->run();
}

}  // namespace pools::detail
