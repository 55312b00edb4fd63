// libFuzzer target: the builtin NVMe/TCP target (PDU receiver, connection state machine, Fabrics,
// admin and I/O command parsing and execution) as a host sees it, over real TCP on 127.0.0.1.
//
// Once per process: two reactors, a 16 MiB malloc bdev exported as namespace 1 of
// nqn.2016-06.io.spdk:fuzz (any host) and the discovery subsystem, a listener on a free port, and
// one long-lived controller set up by replaying a recorded session ($NVMF_FUZZ_SETUP, written by
// test/helpers/fuzz-corpus.ts: ICReq, admin Connect, CC.EN = 1, Identify, ...). Being the first
// controller of a fresh target it has controller ID 1, as in the recording, so the recorded
// I/O-queue sessions in the seed corpus connect to it.
//
// Per input: one TCP connection that sends the input as the host's byte stream (see HostStream),
// then half-closes. Checked: the target closes the
// connection within 10 s (no hang), every queue pair the input opened is gone again afterwards
// (no leak), and every 64 inputs the long-lived controller still answers a Keep Alive (the target
// keeps serving the hosts that behave). A broken check aborts, which libFuzzer reports.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../../native/builtin/bdev/malloc.h"
#include "../../native/builtin/nvmf/target.h"
#include "../../native/builtin/reactor/reactor.h"
#include "../../native/common/nvme_tcp/pdu.h"

using namespace spdk_node;

namespace {

constexpr const char* kNqn = "nqn.2016-06.io.spdk:fuzz";
constexpr const char* kDiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";

struct World {
  std::vector<std::unique_ptr<ThreadReactor>> reactors;
  NvmfTarget* tgt = nullptr;
  uint16_t port = 0;
  int admin_fd = -1;  // the long-lived controller's admin queue
  uint64_t inputs = 0;
};

World* world = nullptr;

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "nvmf target fuzz: %s\n", what);
  abort();
}

uint64_t NowMs() { return Reactor::NowUs() / 1000; }

uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("bind for a free port");
  socklen_t l = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
  close(fd);
  return ntohs(a.sin_port);
}

int Dial() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  // Each connection from its own address in 127.1.0.0/16: the host side closes first (it
  // half-closes to end the input), so its sockets sit in TIME_WAIT for a minute, and at ~1000
  // inputs a second one source address would run out of ports.
  static uint32_t next_src = 0;
  const uint32_t n = next_src++ % (254u * 254u);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | ((n / 254 + 1) << 8) | (n % 254 + 1));
  if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) Die("bind a 127.1.x.y source");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(world->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    // libFuzzer's SIGALRM (its -timeout) can interrupt connect(); it then completes by itself.
    int err = errno;
    if (err == EINTR) {
      pollfd pf{fd, POLLOUT, 0};
      while (poll(&pf, 1, 10000) < 0 && errno == EINTR) {
      }
      socklen_t l = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
    }
    if (err != 0) {
      fprintf(stderr, "connect: %s\n", strerror(err));
      Die("connect to the target");
    }
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// The host side of one connection: sends the input PDU by PDU (framed by PLEN) while reading
// what the target answers. Like a real host it sends H2CData only after the R2T it answers: an
// H2CData PDU waits (up to 20 ms) for an R2T with its CCCID and takes that R2T's TTAG (the
// target picks TTAGs at run time, so the recorded ones need not match); its header digest is
// recomputed if it was valid. Bytes that do not frame as PDUs go out as they are.
class HostStream {
 public:
  explicit HostStream(int fd) : fd_(fd) {}

  // Returns false if the target closed the connection before everything was sent.
  bool Send(const uint8_t* p, size_t n, uint64_t deadline_ms) {
    size_t pos = 0;
    while (pos < n) {
      size_t len = n - pos;
      std::vector<uint8_t> pdu;
      const uint8_t* out = p + pos;
      if (len >= 8) {
        const uint32_t plen = nvme_tcp::Get32(p + pos + 4);
        if (plen >= 8 && plen <= len) len = plen;
        if (p[pos] == nvme_tcp::kH2CData && len >= 24 && p[pos + 2] == 24) {
          pdu.assign(p + pos, p + pos + len);
          if (!MatchR2T(pdu.data(), len, deadline_ms)) return false;
          out = pdu.data();
        }
      }
      if (!Write(out, len, deadline_ms)) return false;
      pos += len;
    }
    return true;
  }

 private:
  bool MatchR2T(uint8_t* h, size_t len, uint64_t deadline_ms) {
    const uint16_t cccid = nvme_tcp::Get16(h + 8);
    const uint64_t until = std::min<uint64_t>(deadline_ms, NowMs() + 20);
    for (;;) {
      auto it = r2t_.find(cccid);
      if (it != r2t_.end()) {
        const bool digest_ok = (h[1] & nvme_tcp::kFlagHdgst) && len >= 28 &&
                               nvme_tcp::Digest(h, 24) == nvme_tcp::Get32(h + 24);
        nvme_tcp::Put16(h + 10, it->second);
        if (digest_ok) nvme_tcp::Put32(h + 24, nvme_tcp::Digest(h, 24));
        if (h[1] & nvme_tcp::kFlagLastPdu) r2t_.erase(it);
        return true;
      }
      if (NowMs() >= until) return true;  // no R2T: send it as it is
      if (!Pump(2)) return false;
    }
  }

  // Reads what is there (waiting up to wait_ms); false when the target closed.
  bool Pump(int wait_ms) {
    pollfd pf{fd_, POLLIN, 0};
    if (poll(&pf, 1, wait_ms) <= 0) return true;
    uint8_t b[65536];
    const ssize_t k = recv(fd_, b, sizeof(b), MSG_DONTWAIT);
    if (k == 0) return false;
    if (k < 0) return errno == EAGAIN || errno == EINTR;
    Parse(b, static_cast<size_t>(k));
    return true;
  }

  // Frames the target's PDUs to learn R2Ts (CCCID -> TTAG).
  void Parse(const uint8_t* b, size_t n) {
    if (lost_) return;
    rx_.insert(rx_.end(), b, b + n);
    size_t off = 0;
    while (rx_.size() - off >= 8) {
      const uint32_t plen = nvme_tcp::Get32(rx_.data() + off + 4);
      if (plen < 8) {
        lost_ = true;
        break;
      }
      if (rx_.size() - off < plen) break;
      if (rx_[off] == nvme_tcp::kR2T && plen >= 24) {
        r2t_[nvme_tcp::Get16(rx_.data() + off + 8)] = nvme_tcp::Get16(rx_.data() + off + 10);
      }
      off += plen;
    }
    rx_.erase(rx_.begin(), rx_.begin() + off);
    if (lost_) rx_.clear();
  }

  bool Write(const uint8_t* p, size_t n, uint64_t deadline_ms) {
    size_t sent = 0;
    while (sent < n) {
      if (NowMs() > deadline_ms) Die("the target stopped reading a connection (hang)");
      pollfd pf{fd_, POLLIN | POLLOUT, 0};
      if (poll(&pf, 1, 100) < 0 && errno != EINTR) Die("poll");
      if ((pf.revents & POLLIN) && !Pump(0)) return false;
      if (pf.revents & POLLOUT) {
        const ssize_t k = send(fd_, p + sent, n - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN && errno != EINTR) return false;
        if (k > 0) sent += static_cast<size_t>(k);
      }
      if (pf.revents & (POLLERR | POLLHUP)) return false;
    }
    return true;
  }

  int fd_;
  std::vector<uint8_t> rx_;
  bool lost_ = false;
  std::map<uint16_t, uint16_t> r2t_;
};

// Reads until the target closes the connection.
void DrainToEof(int fd, uint64_t deadline_ms) {
  uint8_t sink[65536];
  for (;;) {
    const int64_t left = static_cast<int64_t>(deadline_ms) - static_cast<int64_t>(NowMs());
    if (left <= 0) Die("the target did not close a half-closed connection within 10 s (hang)");
    pollfd pf{fd, POLLIN, 0};
    if (poll(&pf, 1, static_cast<int>(left)) < 0 && errno != EINTR) Die("poll");
    const ssize_t k = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (k == 0) return;
    if (k < 0 && errno != EAGAIN && errno != EINTR) return;  // reset: closed too
  }
}

uint64_t OpenQpairs() {
  uint64_t n = 0;
  for (size_t i = 0; i < world->tgt->group_count(); i++) {
    PollGroup* g = world->tgt->group(i);
    n += g->stats.current_admin_qpairs.Get() + g->stats.current_io_qpairs.Get();
  }
  return n;
}

// Reads one PDU of exactly `len` bytes from the long-lived admin queue.
void ReadExact(int fd, uint8_t* out, size_t len, uint64_t deadline_ms) {
  size_t got = 0;
  while (got < len) {
    const int64_t left = static_cast<int64_t>(deadline_ms) - static_cast<int64_t>(NowMs());
    if (left <= 0) Die("the long-lived controller did not answer (the target stopped serving)");
    pollfd pf{fd, POLLIN, 0};
    poll(&pf, 1, static_cast<int>(left));
    const ssize_t k = recv(fd, out + got, len - got, MSG_DONTWAIT);
    if (k == 0) Die("the long-lived controller's connection was closed");
    if (k > 0) got += static_cast<size_t>(k);
  }
}

void KeepAliveCheck() {
  static uint16_t cid = 0x4000;
  uint8_t sqe[64] = {0};
  sqe[0] = 0x18;  // Keep Alive
  cid = static_cast<uint16_t>(cid == 0x7fff ? 0x4000 : cid + 1);
  nvme_tcp::Put16(sqe + 2, cid);
  uint8_t pdu[nvme_tcp::kMaxHeaderOut];
  const uint32_t n = nvme_tcp::BuildCapsuleCmd(pdu, nvme_tcp::Params{}, sqe, 0);
  if (send(world->admin_fd, pdu, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) Die("send Keep Alive");
  uint8_t resp[nvme_tcp::kCapsuleRespHlen];
  ReadExact(world->admin_fd, resp, sizeof(resp), NowMs() + 10000);
  if (resp[0] != nvme_tcp::kCapsuleResp) Die("Keep Alive: not a CapsuleResp");
  const uint8_t* cqe = resp + nvme_tcp::off::kCqe;
  if (nvme_tcp::Get16(cqe + 12) != cid) Die("Keep Alive: wrong CID");
  if ((nvme_tcp::Get16(cqe + 14) >> 1) != 0) Die("Keep Alive failed");
}

std::vector<uint8_t> ReadFile(const char* path) {
  std::vector<uint8_t> v;
  FILE* f = fopen(path, "rb");
  if (!f) return v;
  uint8_t b[4096];
  size_t k;
  while ((k = fread(b, 1, sizeof(b), f)) > 0) v.insert(v.end(), b, b + k);
  fclose(f);
  return v;
}

void SetUp() {
  signal(SIGPIPE, SIG_IGN);
  world = new World;
  for (uint32_t i = 0; i < 2; i++) {
    world->reactors.emplace_back(new ThreadReactor(i, -1, false));
    const std::string err = world->reactors.back()->Start();
    if (!err.empty()) Die(err.c_str());
  }
  std::vector<Reactor*> rs;
  for (auto& r : world->reactors) rs.push_back(r.get());
  world->tgt = new NvmfTarget(rs);
  NvmfOpts opts;
  opts.num_shared_buffers = 64;
  if (world->tgt->CreateTransport(opts) != 0) Die("create transport");
  int e = 0;
  MallocBdev* b = MallocBdev::Create("Malloc0", 32768, 512, "", &e);
  if (!b) Die("malloc bdev");
  world->port = FreePort();
  const ListenAddr la{"127.0.0.1", std::to_string(world->port)};
  auto disc = world->tgt->GetOrCreateSubsystem(kDiscoveryNqn, true);
  {
    std::lock_guard<std::mutex> l(disc->mu);
    disc->allow_any_host = true;
  }
  auto s = world->tgt->GetOrCreateSubsystem(kNqn, false);
  {
    std::lock_guard<std::mutex> l(s->mu);
    s->sn = "SPDKNODEFUZZ0001";
    s->mn = "spdk-node fuzz";
    s->allow_any_host = true;
    s->listeners.push_back(la);
    auto table = std::make_shared<NsTable>();
    table->push_back(std::make_shared<Namespace>(1, b));
    s->ns = table;
  }
  s->ns_gen.fetch_add(1, std::memory_order_release);
  if (world->tgt->Listen(la) != 0) Die("listen");

  const char* setup = getenv("NVMF_FUZZ_SETUP");
  if (setup == nullptr) Die("NVMF_FUZZ_SETUP must name the recorded setup session (see test/fuzz/run.sh)");
  std::vector<uint8_t> bytes = ReadFile(setup);
  if (bytes.empty()) Die("cannot read $NVMF_FUZZ_SETUP");
  world->admin_fd = Dial();
  HostStream setup_stream(world->admin_fd);
  if (!setup_stream.Send(bytes.data(), bytes.size(), NowMs() + 10000)) Die("setup session refused");
  // Let the setup's answers arrive, then drop them.
  const uint64_t until = NowMs() + 500;
  uint8_t junk[65536];
  while (NowMs() < until) {
    pollfd pf{world->admin_fd, POLLIN, 0};
    if (poll(&pf, 1, 50) > 0 && recv(world->admin_fd, junk, sizeof(junk), MSG_DONTWAIT) == 0) {
      Die("the target closed the setup session");
    }
  }
  if (OpenQpairs() != 1) Die("the setup session did not leave exactly one admin queue");
  KeepAliveCheck();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  SetUp();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint64_t before = OpenQpairs();
  const int fd = Dial();
  const uint64_t deadline = NowMs() + 10000;
  HostStream host(fd);
  if (host.Send(data, size, deadline)) shutdown(fd, SHUT_WR);
  DrainToEof(fd, deadline);
  close(fd);
  // Queue pairs the input opened close with its connection (the target tears a connection down
  // on its reactor after the socket closed): wait for the count to come back.
  while (OpenQpairs() != before) {
    if (NowMs() > deadline) Die("a queue pair outlived its connection (leak)");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (++world->inputs % 64 == 0) KeepAliveCheck();
  return 0;
}
