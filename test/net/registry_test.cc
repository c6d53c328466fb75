// test/net/registry_test.cc - discovery (issue 5): the first process at
// the registry address becomes the registrar, others join it; actors are
// found by name (also by waiting for one), listed, and dropped when they
// exit or their process goes.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test/net/peer_process.h"
#include "weft/testing/gtest.h"
#include "weft/weft.h"

namespace {

using weft::testing::Describe;
using weft::testing::PeerOptions;
using weft::testing::PeerProcess;
using weft::testing::RunTask;
using weft::testing::RuntimeTest;

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

weft_err Echo(weft_ctx *ctx, const weft_payload *args, void *) {
  return weft_ctx_return(ctx, args->data, args->len);
}

const weft_function kFns[] = {{"t:echo", Echo, nullptr}};

std::string EchoVia(weft_portal *p, const char *what) {
  weft_payload r{};
  weft_err rc = weft_portal_run(p, "t:echo", what, std::strlen(what), &r);
  std::string out = rc == WEFT_OK ? std::string(reinterpret_cast<const char *>(
                                                    r.data),
                                                r.len)
                                  : std::string("error: ") + weft_errname(rc);
  weft_payload_free(&r);
  return out;
}

// The member (a separately started program) is forked in SetUp, before
// this process opens its runtime (fork from a multithreaded process is
// not something ThreadSanitizer or libasan support); it waits for Go()
// before it joins the registry, so that this process is the registrar.
class Registry : public RuntimeTest {
 protected:
  struct Member {
    const char *name;  // nullptr: no member; "-": a plain weft process
    int delay_ms;
  };
  virtual Member MemberFor(const std::string &test) {
    if (test.find("FindCanWait") != std::string::npos) return {"late", 300};
    if (test.find("Stale") != std::string::npos) return {"doomed", 0};
    if (test.find("SeparateProgram") != std::string::npos)
      return {"member", 0};
    if (test.find("SomethingElse") != std::string::npos) return {"-", 0};
    return {nullptr, 0};
  }

  void SetUp() override {
    Member m = MemberFor(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    if (m.name != nullptr) {
      ASSERT_EQ(0, pipe(go_));
      PeerOptions o;
      o.name = std::strcmp(m.name, "-") == 0 ? "server" : m.name;
      o.functions.assign(kFns, kFns + 1);
      if (std::strcmp(m.name, "-") != 0) {
        uint16_t port = port_;
        int go = go_[0], delay = m.delay_ms;
        o.ready = [port, go, delay](weft_runtime *rt, weft_aid server) {
          std::thread([rt, server, port, go, delay] {
            char b;
            if (read(go, &b, 1) != 1) _exit(22);
            bool reg = true;
            if (weft_registry_open(rt, "127.0.0.1", port, &reg) != WEFT_OK ||
                reg)
              _exit(20);
            std::this_thread::sleep_for(std::chrono::milliseconds(delay));
            if (weft_registry_register(rt, server) != WEFT_OK) _exit(21);
          }).detach();
        };
      }
      ASSERT_TRUE(member_.Start(o));
    }
    RuntimeTest::SetUp();
  }

  // Lets the member join the registry (this process opened it first).
  void Go() { ASSERT_EQ(1, write(go_[1], "g", 1)); }

  void TearDown() override {
    RuntimeTest::TearDown();
    member_.Kill();
    if (go_[0] >= 0) {
      close(go_[0]);
      close(go_[1]);
    }
  }

  uint16_t port_ = FreePort();
  int go_[2] = {-1, -1};
  PeerProcess member_;
};

TEST_F(Registry, FirstIsRegistrarAndASeparateProgramJoinsAndIsFound) {
  bool is_reg = false;
  ASSERT_EQ(WEFT_OK, weft_registry_open(rt_, "127.0.0.1", port_, &is_reg));
  EXPECT_TRUE(is_reg);
  Go();
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_portal *p = nullptr;
              weft_err rc = weft_registry_find(rt_, "member", true, 5000, &p);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              if (rc != WEFT_OK) return rc;
              EXPECT_EQ("hello", EchoVia(p, "hello"));
              weft_portal_free(p);
              weft_uid uids[8];
              size_t n = 0;
              EXPECT_EQ(WEFT_OK, weft_registry_list(rt_, uids, 8, &n));
              EXPECT_EQ(1u, n);
              EXPECT_STREQ("member", uids[0].name);
              return WEFT_OK;
            }));
}

TEST_F(Registry, FindCanWaitForALateRegistration) {
  ASSERT_EQ(WEFT_OK, weft_registry_open(rt_, "127.0.0.1", port_, nullptr));
  Go();
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_portal *p = nullptr;
              // Not there yet: without waiting, ENOENT.
              EXPECT_EQ(WEFT_ENOENT,
                        weft_registry_find(rt_, "late", false, 0, &p));
              auto t0 = std::chrono::steady_clock::now();
              weft_err rc = weft_registry_find(rt_, "late", true, 5000, &p);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              EXPECT_GT(std::chrono::steady_clock::now() - t0,
                        std::chrono::milliseconds(100));
              if (rc == WEFT_OK) {
                EXPECT_EQ("x", EchoVia(p, "x"));
                weft_portal_free(p);
              }
              return WEFT_OK;
            }));
}

TEST_F(Registry, StaleEntryIsDroppedWhenItsProcessDies) {
  ASSERT_EQ(WEFT_OK, weft_registry_open(rt_, "127.0.0.1", port_, nullptr));
  Go();
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_portal *p = nullptr;
              weft_err rc = weft_registry_find(rt_, "doomed", true, 5000, &p);
              EXPECT_EQ(WEFT_OK, rc);
              if (p) weft_portal_free(p);
              member_.Kill();
              // The registrar drops it when the member's connection ends.
              for (int i = 0; i < 200; i++) {
                rc = weft_registry_find(rt_, "doomed", false, 0, &p);
                if (rc != WEFT_OK) break;
                weft_portal_free(p);
                weft_sleep(10 * 1000000u);
              }
              EXPECT_EQ(WEFT_ENOENT, rc);
              return WEFT_OK;
            }));
}

TEST_F(Registry, AnActorIsUnregisteredWhenItExits) {
  ASSERT_EQ(WEFT_OK, weft_registry_open(rt_, "127.0.0.1", port_, nullptr));
  weft_spawn_opts so{};
  so.name = "temp";
  so.functions = kFns;
  so.nfunctions = 1;
  weft_aid temp{};
  ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &so, &temp));
  ASSERT_EQ(WEFT_OK, weft_registry_register(rt_, temp));
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_portal *p = nullptr;
              EXPECT_EQ(WEFT_OK, weft_registry_find(rt_, "temp", false, 0, &p));
              if (p) {
                EXPECT_EQ(temp.id, weft_portal_aid(p).id) << "a local portal";
                EXPECT_EQ("here", EchoVia(p, "here"));
                weft_portal_free(p);
              }
              weft_stop(rt_, temp);
              weft_err rc = WEFT_OK;
              for (int i = 0; i < 200; i++) {
                rc = weft_registry_find(rt_, "temp", false, 0, &p);
                if (rc != WEFT_OK) break;
                weft_portal_free(p);
                weft_sleep(10 * 1000000u);
              }
              EXPECT_EQ(WEFT_ENOENT, rc);
              return WEFT_OK;
            }));
}

TEST_F(Registry, SomethingElseAtTheAddressIsRefused) {
  // member_ is a plain weft process, not a registrar.
  EXPECT_EQ(WEFT_EPROTO,
            weft_registry_open(rt_, "127.0.0.1", member_.port(), nullptr));
}

}  // namespace
