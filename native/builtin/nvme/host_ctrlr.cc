#include "host_ctrlr.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../../common/clock.h"
#include "../../common/nvme/spec.h"

namespace spdk_node {
namespace nvme_host {

using nvme_tcp::Get16;
using nvme_tcp::Get32;
using nvme_tcp::Get64;
using nvme_tcp::Put16;
using nvme_tcp::Put32;
using nvme_tcp::Put64;
namespace sqe = nvme::sqe;
namespace cqe = nvme::cqe;

namespace {

uint64_t NowUs() { return NowNs() / 1000; }

// Period of the controller's timer while it initialises (deadline checks).
constexpr uint64_t kInitTickMs = 50;
// How long a normal shutdown may take before the connection is closed anyway.
constexpr uint64_t kShutdownTimeoutMs = 5000;

std::string StatusText(int32_t st) {
  char buf[64];
  snprintf(buf, sizeof(buf), "SCT 0x%x SC 0x%02x", (st >> 8) & 7, st & 0xff);
  return buf;
}

void FreeTimer(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

}  // namespace

HostCtrlr::HostCtrlr(uv_loop_t* loop, const CtrlrOptions& o) : loop_(loop), opts_(o) {
  run_js_ = [](const std::function<void()>& f) { f(); };
  timer_ = new uv_timer_t();
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  ka_timer_ = new uv_timer_t();
  uv_timer_init(loop_, ka_timer_);
  ka_timer_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(ka_timer_));
}

HostCtrlr::~HostCtrlr() {
  *alive_ = false;
  Close();
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), FreeTimer);
  uv_close(reinterpret_cast<uv_handle_t*>(ka_timer_), FreeTimer);
}

const NsData* HostCtrlr::ns(uint32_t nsid) const {
  for (const NsData& n : ns_)
    if (n.nsid == nsid) return &n;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Connection

void HostCtrlr::Start(Done done) {
  init_done_ = std::move(done);
  Connect();
}

void HostCtrlr::Connect() {
  QpairOptions q;
  q.qid = 0;
  q.cntlid = 0xFFFF;
  q.queue_size = std::max<uint32_t>(2, opts_.admin_queue_size);
  q.depth = q.queue_size - 1;
  q.kato_ms = opts_.kato_ms;
  q.hdgst = opts_.hdgst;
  q.ddgst = opts_.ddgst;
  q.hpda = opts_.hpda;
  q.in_capsule_limit = 8192;  // the admin queue's in-capsule data size on NVMe/TCP
  q.subnqn = opts_.subnqn;
  q.hostnqn = opts_.hostnqn;
  memcpy(q.hostid, opts_.hostid, 16);
  admin_ = std::make_unique<HostQpair>(q, this);
  slots_.assign(q.depth, Slot());
  free_.clear();
  for (uint32_t i = q.depth; i > 0; i--) free_.push_back(static_cast<uint16_t>(i - 1));
  done_.clear();
  ready_ = false;
  closed_ = false;
  started_init_ = false;
  initializing_ = true;
  const int rc = admin_->Connect(reinterpret_cast<const sockaddr*>(&opts_.addr), opts_.addrlen);
  driver_ = UvQpairDriver::Create(loop_, admin_.get(), [this]() { OnEvent(); }, false);
  // The deadline covers the whole initialisation.
  const uint64_t deadline = NowUs() + static_cast<uint64_t>(opts_.connect_timeout_ms) * 1000;
  timer_fn_ = nullptr;
  uv_timer_stop(timer_);
  uv_timer_start(ka_timer_, OnKeepAliveTimer, kInitTickMs, kInitTickMs);
  last_ka_us_ = deadline;  // during initialisation: the deadline (see OnKeepAliveTimer)
  if (rc < 0) run_js_([this]() { Dispatch(); });
}

void HostCtrlr::OnStateChange(QpairState s) {
  if (s == QpairState::kReady && initializing_) started_init_ = true;
  // kFailed: handled in Dispatch() (initialisation fails; otherwise the controller is failed).
}

void HostCtrlr::OnRequestDone(HostRequest* r) { done_.push_back(r->cid); }

void HostCtrlr::OnEvent() {
  run_js_([this]() { Dispatch(); });
}

void HostCtrlr::Dispatch() {
  std::shared_ptr<bool> alive = alive_;
  while (!done_.empty()) {
    std::vector<uint16_t> batch;
    batch.swap(done_);
    for (uint16_t cid : batch) {
      Slot& s = slots_[cid];
      HostRequest* r = admin_->request(cid);
      AdminCb cb = std::move(s.cb);
      std::vector<uint8_t> data = std::move(s.buf);
      uint8_t c[16];
      memcpy(c, r->cqe, 16);
      const int32_t st = r->status;
      s.busy = false;
      s.cb = nullptr;
      free_.push_back(cid);
      if (cb) cb(st, c, std::move(data));
      if (!*alive) return;
    }
  }
  while (!pending_.empty() && !free_.empty() && admin_ && admin_->ready()) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    const uint16_t slot = free_.back();
    free_.pop_back();
    Launch(slot, p.sqe, std::move(p.data), p.len, p.h2c, std::move(p.cb));
  }
  if (started_init_) {
    started_init_ = false;
    InitCap();
  }
  if (initializing_ && admin_ && admin_->failed()) {
    InitFail(admin_->error_errno() ? admin_->error_errno() : EIO, admin_->error(),
             admin_->connect_status(), admin_->connect_dw0());
  }
  if (admin_ && admin_->failed() && !pending_.empty()) {
    std::deque<Pending> p;
    p.swap(pending_);
    const int e = admin_->error_errno() ? admin_->error_errno() : ENOTCONN;
    for (Pending& x : p) {
      uint8_t c[16] = {0};
      x.cb(-e, c, {});
      if (!*alive) return;
    }
  }
  if (admin_ && admin_->failed()) {
    ready_ = false;
    if (!initializing_) uv_timer_stop(ka_timer_);
  }
}

int HostCtrlr::Admin(const uint8_t s[64], std::vector<uint8_t> data, uint32_t len, bool h2c, AdminCb cb) {
  if (!admin_ || admin_->failed() || !admin_->ready()) return -ENOTCONN;
  if (free_.empty()) {
    Pending p;
    memcpy(p.sqe, s, 64);
    p.data = std::move(data);
    p.len = len;
    p.h2c = h2c;
    p.cb = std::move(cb);
    pending_.push_back(std::move(p));
    return 0;
  }
  const uint16_t slot = free_.back();
  free_.pop_back();
  Launch(slot, s, std::move(data), len, h2c, std::move(cb));
  return 0;
}

void HostCtrlr::Launch(uint16_t slot, const uint8_t s[64], std::vector<uint8_t> data, uint32_t len,
                       bool h2c, AdminCb cb) {
  Slot& sl = slots_[slot];
  sl.busy = true;
  sl.cb = std::move(cb);
  sl.buf = std::move(data);
  if (sl.buf.size() < len) sl.buf.resize(len);
  HostRequest* r = admin_->request(slot);
  memcpy(r->sqe, s, 64);
  r->data = len > 0 ? sl.buf.data() : nullptr;
  r->len = len;
  r->h2c = h2c && len > 0;
  r->c2h = !h2c && len > 0;
  admin_->Submit(r);
  admin_->Flush();
  if (driver_) driver_->Update();
}

// ---------------------------------------------------------------------------------------------
// Timers

void HostCtrlr::StartTimer(uint64_t ms, std::function<void()> fn) {
  timer_fn_ = std::move(fn);
  uv_timer_start(timer_, OnTimer, ms, 0);
}

void HostCtrlr::OnTimer(uv_timer_t* t) {
  HostCtrlr* c = static_cast<HostCtrlr*>(t->data);
  std::function<void()> fn = std::move(c->timer_fn_);
  c->timer_fn_ = nullptr;
  if (fn) c->run_js_(fn);
}

void HostCtrlr::OnKeepAliveTimer(uv_timer_t* t) {
  HostCtrlr* c = static_cast<HostCtrlr*>(t->data);
  c->run_js_([c]() {
    if (c->initializing_) {
      if (NowUs() > c->last_ka_us_ && c->admin_ && !c->admin_->failed()) {
        c->admin_->Fail(ETIMEDOUT, "controller " + c->opts_.where + " (" + c->opts_.subnqn +
                                       ") did not finish connecting within " +
                                       std::to_string(c->opts_.connect_timeout_ms) + " ms");
        if (c->driver_) c->driver_->Update();
        c->Dispatch();
      }
      return;
    }
    if (!c->ready_) return;
    c->CheckTimeouts();
    if (c->opts_.kato_ms > 0 && NowUs() - c->last_ka_us_ >= c->opts_.kato_ms * 1000ull / 2) c->KeepAlive();
  });
}

void HostCtrlr::KeepAlive() {
  if (ka_outstanding_) return;
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kKeepAlive;
  last_ka_us_ = NowUs();
  if (Admin(s, {}, 0, false, [this](int32_t, const uint8_t*, std::vector<uint8_t>) { ka_outstanding_ = false; }) == 0)
    ka_outstanding_ = true;
}

void HostCtrlr::CheckTimeouts() {
  if (opts_.admin_timeout_ms == 0 || !admin_ || admin_->failed()) return;
  std::vector<HostRequest*> late;
  admin_->CheckTimeouts(NowUs() - opts_.admin_timeout_ms * 1000ull, &late);
  // An Asynchronous Event Request is answered only when something happens.
  late.erase(std::remove_if(late.begin(), late.end(),
                            [](HostRequest* r) { return r->sqe[sqe::kOpc] == nvme::opc::kAsyncEventRequest; }),
             late.end());
  if (late.empty()) return;
  // An admin command that gets no answer: the controller is not usable (SPDK resets it).
  char buf[128];
  snprintf(buf, sizeof(buf), "admin command (opcode 0x%02x) got no answer within %u ms",
           late[0]->sqe[sqe::kOpc], opts_.admin_timeout_ms);
  admin_->Fail(ETIMEDOUT, buf);
  if (driver_) driver_->Update();
  Dispatch();
}

// ---------------------------------------------------------------------------------------------
// Initialisation

void HostCtrlr::InitFail(int err, const std::string& msg, int32_t status, uint32_t dw0) {
  if (!initializing_) return;
  initializing_ = false;
  ready_ = false;
  uv_timer_stop(ka_timer_);
  uv_timer_stop(timer_);
  timer_fn_ = nullptr;
  if (admin_ && !admin_->failed()) admin_->Fail(err, msg);
  if (driver_) driver_->Update();
  Done d = std::move(init_done_);
  init_done_ = nullptr;
  if (d) d(err, msg, status, dw0);
}

void HostCtrlr::PropGet(uint32_t ofst, bool size8, std::function<void(int32_t, uint64_t)> cb) {
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kFabrics;
  s[sqe::kFctype] = nvme::fctype::kPropertyGet;
  s[nvme::prop::kAttrib] = size8 ? 1 : 0;
  Put32(s + nvme::prop::kOfst, ofst);
  int rc = Admin(s, {}, 0, false, [cb](int32_t st, const uint8_t* c, std::vector<uint8_t>) {
    cb(st, st == 0 ? Get64(c + cqe::kDw0) : 0);
  });
  if (rc < 0) cb(rc, 0);
}

void HostCtrlr::PropSet(uint32_t ofst, uint64_t value, bool size8, std::function<void(int32_t)> cb) {
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kFabrics;
  s[sqe::kFctype] = nvme::fctype::kPropertySet;
  s[nvme::prop::kAttrib] = size8 ? 1 : 0;
  Put32(s + nvme::prop::kOfst, ofst);
  Put64(s + nvme::prop::kValue, value);
  int rc = Admin(s, {}, 0, false, [cb](int32_t st, const uint8_t*, std::vector<uint8_t>) { cb(st); });
  if (rc < 0) cb(rc);
}

void HostCtrlr::IdentifyCmd(uint8_t cns, uint32_t nsid, std::function<void(int32_t, std::vector<uint8_t>)> cb) {
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kIdentify;
  Put32(s + sqe::kNsid, nsid);
  Put32(s + sqe::kCdw10, cns);
  int rc = Admin(s, {}, 4096, false, [cb](int32_t st, const uint8_t*, std::vector<uint8_t> d) { cb(st, std::move(d)); });
  if (rc < 0) cb(rc, {});
}

// Failure text for an init step.
#define INIT_CHECK(st, what)                                                                        \
  do {                                                                                              \
    if ((st) != 0) {                                                                                \
      if ((st) < 0)                                                                                 \
        InitFail(-(st), std::string(what) + ": " + (admin_->failed() ? admin_->error() : strerror(-(st)))); \
      else                                                                                          \
        InitFail(EIO, std::string(what) + " failed: " + StatusText(st), st);                        \
      return;                                                                                       \
    }                                                                                               \
  } while (0)

void HostCtrlr::InitCap() {
  PropGet(nvme::prop::kCap, true, [this](int32_t st, uint64_t v) {
    INIT_CHECK(st, "Property Get CAP");
    cap_ = v;
    PropGet(nvme::prop::kVs, false, [this](int32_t st, uint64_t v) {
      INIT_CHECK(st, "Property Get VS");
      vs_ = static_cast<uint32_t>(v);
      InitEnable();
    });
  });
}

void HostCtrlr::InitEnable() {
  PropGet(nvme::prop::kCc, false, [this](int32_t st, uint64_t cc) {
    INIT_CHECK(st, "Property Get CC");
    // CAP.TO: worst-case time to become ready, in 500 ms units.
    const uint64_t to_ms = std::max<uint64_t>(1, (cap_ >> 24) & 0xFF) * 500;
    const uint64_t deadline = NowUs() + to_ms * 1000;
    auto ready = [this](int err, const std::string& msg, int32_t status, uint32_t) {
      if (err != 0) return InitFail(err, msg, status);
      InitIdentify();
    };
    if (cc & nvme::kCcEn) return PollCsts(deadline, false, ready);
    const uint32_t v = nvme::kCcEn | (6u << nvme::kCcIosqesShift) | (4u << nvme::kCcIocqesShift);
    PropSet(nvme::prop::kCc, v, false, [this, deadline, ready](int32_t st) {
      INIT_CHECK(st, "Property Set CC.EN");
      PollCsts(deadline, false, ready);
    });
  });
}

// Reads CSTS until RDY (or, for a shutdown, SHST = complete), every millisecond.
void HostCtrlr::PollCsts(uint64_t deadline_us, bool shutdown, Done done) {
  PropGet(nvme::prop::kCsts, false, [this, deadline_us, shutdown, done](int32_t st, uint64_t csts) {
    if (st != 0) {
      const std::string why = st < 0 ? (admin_->failed() ? admin_->error() : strerror(-st)) : StatusText(st);
      return done(st < 0 ? -st : EIO, "Property Get CSTS: " + why, st > 0 ? st : 0, 0);
    }
    if (csts & nvme::kCstsCfs) return done(EIO, "the controller reports a fatal status (CSTS.CFS)", 0, 0);
    const bool ok = shutdown ? ((csts >> nvme::kCstsShstShift) & 3) == nvme::kShstComplete
                             : (csts & nvme::kCstsRdy) != 0;
    if (ok) return done(0, "", 0, 0);
    if (NowUs() > deadline_us) {
      return done(ETIMEDOUT, shutdown ? "shutdown did not complete in time (CSTS.SHST)"
                                      : "the controller did not become ready within CAP.TO (CSTS.RDY)",
                  0, 0);
    }
    StartTimer(1, [this, deadline_us, shutdown, done]() { PollCsts(deadline_us, shutdown, done); });
  });
}

void HostCtrlr::InitIdentify() {
  IdentifyCmd(nvme::cns::kController, 0, [this](int32_t st, std::vector<uint8_t> d) {
    INIT_CHECK(st, "Identify Controller");
    identify_ = std::move(d);
    const uint8_t* id = identify_.data();
    const uint8_t mdts = id[nvme::idc::kMdts];
    const uint32_t mpsmin = static_cast<uint32_t>((cap_ >> 48) & 0xF);
    const uint64_t page = 4096ull << mpsmin;
    max_xfer_ = mdts == 0 ? 0 : static_cast<uint32_t>(std::min<uint64_t>(page << mdts, 1u << 30));
    const uint32_t ioccsz = Get32(id + nvme::idc::kIoccsz);
    in_capsule_limit_ = ioccsz * 16 > 64 ? ioccsz * 16 - 64 : 0;
    if (opts_.discovery) return InitDone();
    InitQueues();
  });
}

void HostCtrlr::InitQueues() {
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kSetFeatures;
  Put32(s + sqe::kCdw10, nvme::feat::kNumberOfQueues);
  const uint32_t n = std::max<uint32_t>(1, opts_.io_queues) - 1;
  Put32(s + sqe::kCdw11, n | (n << 16));
  int rc = Admin(s, {}, 0, false, [this](int32_t st, const uint8_t* c, std::vector<uint8_t>) {
    if (st < 0) INIT_CHECK(st, "Set Features Number of Queues");
    if (st == 0) {
      const uint32_t dw0 = Get32(c + cqe::kDw0);
      io_queues_granted_ = std::min(dw0 & 0xFFFF, dw0 >> 16) + 1;
    } else {
      io_queues_granted_ = 0;  // the controller said no: I/O queues are refused at Connect if so
    }
    InitNsList();
  });
  if (rc < 0) InitFail(-rc, "Set Features Number of Queues: not connected");
}

void HostCtrlr::InitNsList() {
  ReadNamespaces([this](int32_t st, const std::string& what) {
    INIT_CHECK(st, what);
    InitAer();
  });
}

// Identify Active Namespace List, then each namespace and its identification descriptors; ns_
// is replaced only when every step answered.
void HostCtrlr::ReadNamespaces(NsDone done) {
  IdentifyCmd(nvme::cns::kActiveNsList, 0, [this, done](int32_t st, std::vector<uint8_t> d) {
    if (st != 0) return done(st, "Identify Active Namespace List");
    std::vector<uint32_t> list;
    for (size_t i = 0; i + 4 <= d.size(); i += 4) {
      const uint32_t nsid = Get32(d.data() + i);
      if (nsid == 0) break;
      list.push_back(nsid);
    }
    auto out = std::make_shared<std::vector<NsData>>();
    ReadNextNs(0, std::move(list), out, std::move(done));
  });
}

void HostCtrlr::ReadNextNs(size_t i, std::vector<uint32_t> list, std::shared_ptr<std::vector<NsData>> out,
                           NsDone done) {
  if (i >= list.size()) {
    ns_ = std::move(*out);
    return done(0, "");
  }
  const uint32_t nsid = list[i];
  IdentifyCmd(nvme::cns::kNamespace, nsid, [this, i, nsid, list, out, done](int32_t st, std::vector<uint8_t> d) {
    if (st != 0) return done(st, "Identify Namespace " + std::to_string(nsid));
    NsData n;
    n.nsid = nsid;
    n.nsze = Get64(d.data() + nvme::idns::kNsze);
    const uint8_t flbas = d[nvme::idns::kFlbas] & 0xF;
    const uint8_t lbads = d[nvme::idns::kLbaf0 + 4 * flbas + 2];
    n.lba_size = lbads >= 9 && lbads <= 16 ? 1u << lbads : 0;
    n.id = std::move(d);
    out->push_back(std::move(n));
    IdentifyCmd(nvme::cns::kNsIdDescriptors, nsid, [this, i, list, out, done](int32_t st, std::vector<uint8_t> d) {
      if (st < 0) return done(st, "Identify Namespace Identification Descriptors");
      if (st == 0) out->back().desc = std::move(d);
      ReadNextNs(i + 1, list, out, done);
    });
  });
}

// Asynchronous events (NVMe base 2.0 5.2): enable the notices the controller offers that this
// host acts on (namespace attribute changes, OAES bit 8), then keep up to AERL + 1 (at most 4)
// Asynchronous Event Requests outstanding. A controller that refuses either: no events.
void HostCtrlr::InitAer() {
  const uint32_t oaes = Get32(identify_.data() + nvme::idc::kOaes);
  const uint32_t notices = oaes & nvme::kAecNsAttrNotices;
  if (notices == 0) return InitDone();
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kSetFeatures;
  Put32(s + sqe::kCdw10, nvme::feat::kAsyncEventConfig);
  Put32(s + sqe::kCdw11, notices);
  int rc = Admin(s, {}, 0, false, [this](int32_t st, const uint8_t*, std::vector<uint8_t>) {
    if (st < 0) INIT_CHECK(st, "Set Features Asynchronous Event Configuration");
    if (st == 0) {
      const uint32_t n = std::min<uint32_t>(4, identify_[nvme::idc::kAerl] + 1u);
      for (uint32_t k = 0; k < n; k++) SubmitAer();
    }
    InitDone();
  });
  if (rc < 0) InitFail(-rc, "Set Features Asynchronous Event Configuration: not connected");
}

void HostCtrlr::SubmitAer() {
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kAsyncEventRequest;
  Admin(s, {}, 0, false, [this](int32_t st, const uint8_t* c, std::vector<uint8_t>) {
    // Transport loss, detach, reset (the command dies with its connection) or the limit: no resubmit.
    if (st != 0) return;
    OnAsyncEvent(Get32(c + cqe::kDw0));
  });
}

// An event: read its log page (with RAE clear, which re-arms that event type), refresh the
// namespaces for a namespace notice, report it, and put the request back.
void HostCtrlr::OnAsyncEvent(uint32_t dw0) {
  AsyncEvent ev;
  ev.type = dw0 & 7;
  ev.info = (dw0 >> 8) & 0xFF;
  ev.log_page = (dw0 >> 16) & 0xFF;
  const uint32_t gen = incarnation_;
  auto finish = [this, gen](AsyncEvent ev) {
    if (gen != incarnation_ || !ready_) return;
    if (event_cb_) event_cb_(ev);
    SubmitAer();
  };
  if (ev.log_page == 0) return finish(ev);
  uint8_t s[64] = {0};
  s[sqe::kOpc] = nvme::opc::kGetLogPage;
  Put32(s + sqe::kNsid, 0xFFFFFFFF);
  // CDW10: LID, RAE (bit 15) clear, NUMDL (dwords - 1) in 31:16.
  Put32(s + sqe::kCdw10, ev.log_page | ((kEventLogBytes / 4 - 1) << 16));
  Admin(s, {}, kEventLogBytes, false, [this, ev, gen, finish](int32_t st, const uint8_t*, std::vector<uint8_t> d) mutable {
    if (gen != incarnation_ || !ready_) return;
    if (st == 0 && ev.type == nvme::kAerTypeNotice && ev.log_page == nvme::lid::kChangedNsList) {
      for (size_t i = 0; i + 4 <= d.size(); i += 4) {
        const uint32_t nsid = Get32(d.data() + i);
        if (nsid == 0) break;
        ev.nsids.push_back(nsid);  // 0xFFFFFFFF first: more than 1024 changed
      }
    }
    if (ev.type != nvme::kAerTypeNotice || ev.info != nvme::kAerInfoNsAttrChanged) return finish(std::move(ev));
    ReadNamespaces([this, ev, gen, finish](int32_t st, const std::string& what) mutable {
      if (gen != incarnation_ || !ready_) return;
      if (st != 0) ev.error = what + ": " + (st < 0 ? failure() : StatusText(st));
      finish(std::move(ev));
    });
  });
}

void HostCtrlr::InitDone() {
  initializing_ = false;
  incarnation_++;
  ready_ = true;
  uv_timer_stop(ka_timer_);
  last_ka_us_ = NowUs();
  uint64_t period = 0;
  if (opts_.kato_ms > 0) period = std::max<uint64_t>(1, opts_.kato_ms / 2);
  if (opts_.admin_timeout_ms > 0) {
    const uint64_t t = std::max<uint64_t>(10, opts_.admin_timeout_ms / 4);
    period = period == 0 ? t : std::min(period, t);
  }
  if (period > 0) uv_timer_start(ka_timer_, OnKeepAliveTimer, period, period);
  Done d = std::move(init_done_);
  init_done_ = nullptr;
  if (d) d(0, "", 0, 0);
}

// ---------------------------------------------------------------------------------------------
// Reset, shutdown, close

void HostCtrlr::Teardown(int err, const std::string& why, int32_t status) {
  uv_timer_stop(ka_timer_);
  uv_timer_stop(timer_);
  timer_fn_ = nullptr;
  ready_ = false;
  ka_outstanding_ = false;
  if (driver_ != nullptr) {
    driver_->Close();
    driver_ = nullptr;
  }
  if (admin_) {
    admin_->Fail(err, why, status);
    admin_->CloseSocket();
  }
  initializing_ = false;
  Done d = std::move(init_done_);
  init_done_ = nullptr;
  std::shared_ptr<bool> alive = alive_;
  Dispatch();
  if (!*alive) return;
  if (d) d(err, why, 0, 0);
}

void HostCtrlr::Reset(Done done) {
  Teardown(ECONNABORTED, "controller reset", 0);
  Start(std::move(done));
}

void HostCtrlr::Detach(Done done) {
  if (!ready_ || !admin_ || admin_->failed()) {
    Close();
    return done(0, "", 0, 0);
  }
  ready_ = false;
  uv_timer_stop(ka_timer_);
  auto finish = [this, done](int err, const std::string& msg, int32_t st, uint32_t dw0) {
    Close();
    done(err, msg, st, dw0);
  };
  PropGet(nvme::prop::kCc, false, [this, finish](int32_t st, uint64_t cc) {
    if (st != 0) return finish(0, "", 0, 0);  // best effort: the connection closes anyway
    const uint32_t v = (static_cast<uint32_t>(cc) & ~(3u << nvme::kCcShnShift)) | (1u << nvme::kCcShnShift);
    PropSet(nvme::prop::kCc, v, false, [this, finish](int32_t st) {
      if (st != 0) return finish(0, "", 0, 0);
      PollCsts(NowUs() + kShutdownTimeoutMs * 1000, true,
               [finish](int, const std::string&, int32_t, uint32_t) { finish(0, "", 0, 0); });
    });
  });
}

void HostCtrlr::Close() {
  if (closed_) return;
  closed_ = true;
  Teardown(ECANCELED, "controller detached", 0);
}

}  // namespace nvme_host
}  // namespace spdk_node
