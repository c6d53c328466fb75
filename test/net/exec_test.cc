// test/net/exec_test.cc - child processes that execute a program afresh
// (WEFT_SPAWN_EXEC): this test program re-executed in child mode through
// weft_main(), and a separate program (weft_exec_child). This binary has
// its own main(): weft_expose() and weft_main() come first.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "weft/testing/gtest.h"
#include "weft/weft.h"

namespace {

using weft::testing::Describe;
using weft::testing::IsBoxedError;
using weft::testing::RunTask;
using weft::testing::RuntimeTest;

// Set by the parent before spawning: an exec child starts from a fresh
// image and must not see it (a fork child would).
int g_marker = 0;

weft_err Marker(weft_ctx *ctx, const weft_payload *, void *) {
  int v[2] = {g_marker, static_cast<int>(getpid())};
  return weft_ctx_return(ctx, v, sizeof(v));
}

weft_err Fail(weft_ctx *, const weft_payload *, void *) {
  return weft_fail("ValueError", "failed in an exec child");
}

const weft_function kFns[] = {{"x:marker", Marker, nullptr},
                              {"x:fail", Fail, nullptr}};

std::string Str(const weft_payload &p) {
  return std::string(reinterpret_cast<const char *>(p.data), p.len);
}

class Exec : public RuntimeTest {
 protected:
  void Configure(weft_config *cfg) override {
    if (program_) cfg->child_program = program_;
  }
  const char *program_ = nullptr;
};

TEST_F(Exec, ThisProgramReExecutedServesItsExposedFunctions) {
  g_marker = 42;
  int child_pid = 0;
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_nursery *n = nullptr;
              weft_err rc = weft_nursery_open(&n);
              if (rc != WEFT_OK) return rc;
              weft_actor_opts o{"execd", kFns, 2, WEFT_SPAWN_EXEC};
              weft_portal *p = nullptr;
              rc = weft_nursery_start_actor(n, &o, &p);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              if (rc == WEFT_OK) {
                child_pid = weft_portal_pid(p);
                weft_payload r{};
                rc = weft_portal_run(p, "x:marker", nullptr, 0, &r);
                EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
                int v[2] = {-1, -1};
                if (r.len == sizeof(v)) std::memcpy(v, r.data, sizeof(v));
                weft_payload_free(&r);
                EXPECT_EQ(0, v[0]) << "a fresh image, not a copy of ours";
                EXPECT_EQ(child_pid, v[1]);
                EXPECT_NE(getpid(), v[1]);
                // Errors cross as from any remote actor.
                EXPECT_EQ(WEFT_EREMOTE,
                          weft_portal_run(p, "x:fail", nullptr, 0, nullptr));
                EXPECT_TRUE(IsBoxedError(weft_task_error(), "ValueError",
                                         "execd"));
                weft_portal_cancel_actor(p, nullptr);
              }
              return weft_nursery_exit(n, rc == WEFT_EREMOTE ? WEFT_OK : rc);
            }));
  EXPECT_GT(child_pid, 0);
  g_marker = 0;
}

class ExecNamed : public Exec {
 protected:
  void SetUp() override {
    program_ = WEFT_TEST_EXEC_CHILD;
    Exec::SetUp();
  }
};

TEST_F(ExecNamed, ANamedExecutableServesItsOwnFunctions) {
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_nursery *n = nullptr;
              weft_err rc = weft_nursery_open(&n);
              if (rc != WEFT_OK) return rc;
              // Only the names matter: the child program has its own.
              static const weft_function wanted[] = {
                  {"child:whoami", Marker, nullptr}};
              weft_actor_opts o{"other", wanted, 1, WEFT_SPAWN_EXEC};
              weft_portal *p = nullptr;
              rc = weft_nursery_start_actor(n, &o, &p);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              if (rc == WEFT_OK) {
                weft_payload r{};
                rc = weft_portal_run(p, "child:whoami", nullptr, 0, &r);
                EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
                EXPECT_EQ("exec_child pid " +
                              std::to_string(weft_portal_pid(p)),
                          Str(r));
                weft_payload_free(&r);
                weft_portal_cancel_actor(p, nullptr);
              }
              return weft_nursery_exit(n, rc);
            }));
}

TEST_F(ExecNamed, AProgramThatIsNotAWeftChildFailsTheSpawnClearly) {
  program_ = "/bin/true";
  weft_close_report rep{};
  ASSERT_EQ(WEFT_OK, weft_runtime_close(rt_, &rep));
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.workers = 2;
  cfg.child_program = "/bin/true";
  ASSERT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt_));
  weft_error *err = nullptr;
  weft_err rc = RunTask(
      rt_, "root",
      [&]() -> weft_err {
        weft_nursery *n = nullptr;
        weft_err r = weft_nursery_open(&n);
        if (r != WEFT_OK) return r;
        weft_actor_opts o{"nope", kFns, 2, WEFT_SPAWN_EXEC};
        weft_portal *p = nullptr;
        r = weft_nursery_start_actor(n, &o, &p);
        weft_error *keep = const_cast<weft_error *>(
            weft_error_hold(weft_task_error()));
        weft_err x = weft_nursery_exit(n, WEFT_OK);
        EXPECT_EQ(WEFT_OK, x);
        weft_error_release(keep);
        return r;
      },
      &err);
  EXPECT_NE(WEFT_OK, rc);
  weft_error_release(err);
}

// tractor's test_reg_then_unreg (S137), with exec children: the root is
// the registrar and registers itself; a child registers on start (it
// joins the registry its parent joined) and is gone from the registry
// after the nursery cancelled it.
TEST_F(Exec, ChildRegistersOnStartAndIsUnregisteredAfterCancel) {
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof(a);
  ASSERT_EQ(0, bind(sock, reinterpret_cast<sockaddr *>(&a), sizeof(a)));
  ASSERT_EQ(0, getsockname(sock, reinterpret_cast<sockaddr *>(&a), &alen));
  close(sock);
  uint16_t port = ntohs(a.sin_port);
  bool is_reg = false;
  ASSERT_EQ(WEFT_OK, weft_registry_open(rt_, "127.0.0.1", port, &is_reg));
  EXPECT_TRUE(is_reg);
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_runtime *rt = weft_current_runtime();
              EXPECT_EQ(WEFT_OK,
                        weft_registry_register(rt, weft_current_actor()));
              weft_nursery *n = nullptr;
              weft_err rc = weft_nursery_open(&n);
              if (rc != WEFT_OK) return rc;
              weft_actor_opts o{"kid", kFns, 2, WEFT_SPAWN_EXEC};
              weft_portal *p = nullptr;
              rc = weft_nursery_start_actor(n, &o, &p);
              weft_portal *found = nullptr;
              if (rc == WEFT_OK)
                rc = weft_registry_find(rt, "kid", true, 5000, &found);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              if (found) weft_portal_free(found);
              weft_uid uids[8];
              size_t count = 0;
              EXPECT_EQ(WEFT_OK, weft_registry_list(rt, uids, 8, &count));
              EXPECT_EQ(2u, count) << "root and kid";
              if (rc == WEFT_OK) rc = weft_nursery_cancel(n);
              rc = weft_nursery_exit(n, rc);
              // Unregistered: at its exit, or when its connection to the
              // registrar ended.
              for (int i = 0; i < 200; i++) {
                EXPECT_EQ(WEFT_OK, weft_registry_list(rt, uids, 8, &count));
                if (count == 1) break;
                weft_sleep(10 * 1000000u);
              }
              EXPECT_EQ(1u, count);
              EXPECT_STREQ("root", uids[0].name);
              return rc;
            }));
}

}  // namespace

int main(int argc, char **argv) {
  weft_expose(kFns, 2);
  weft_main(argc, argv);  // a child never comes back from here
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
