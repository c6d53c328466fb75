// Tests of the logging facility (weft/log.h).
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "weft/testing/gtest.h"
#include "weft/weft.h"

namespace {

// Collects lines; restores the sink and the threshold when it goes away,
// since both are process-wide.
class CapturedLog {
 public:
  CapturedLog() : saved_level_(Threshold()) {
    weft_log_set_sink(&CapturedLog::Sink, this);
  }
  ~CapturedLog() {
    weft_log_set_sink(nullptr, nullptr);
    weft_log_set_level(saved_level_);
  }
  std::vector<std::string> Lines() {
    std::lock_guard<std::mutex> g(mu_);
    return lines_;
  }
  static int Threshold() {
    return __atomic_load_n(&weft__log_threshold, __ATOMIC_RELAXED);
  }

 private:
  static void Sink(const char *line, void *arg) {
    auto *self = static_cast<CapturedLog *>(arg);
    std::lock_guard<std::mutex> g(self->mu_);
    self->lines_.emplace_back(line);
  }
  std::mutex mu_;
  std::vector<std::string> lines_;
  int saved_level_;
};

// Sets WEFT_LOG for one test and puts back what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char *name, const char *value) : name_(name) {
    const char *old = getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_.c_str(), old_.c_str(), 1);
    else
      unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// "HH:MM:SS.uuuuuu " at the start of a line; returns the rest, or "" with
// a failure.
std::string AfterTime(const std::string &line) {
  const char *pat = "dd:dd:dd.dddddd ";
  const size_t n = std::strlen(pat);
  bool ok = line.size() > n;
  for (size_t i = 0; ok && i < n; i++)
    ok = pat[i] == 'd' ? std::isdigit(static_cast<unsigned char>(line[i]))
                       : line[i] == pat[i];
  EXPECT_TRUE(ok) << "no time stamp: " << line;
  return ok ? line.substr(n) : std::string();
}

// The level name left-justified in 7 columns, then a space.
std::string LevelField(const char *name) {
  std::string f(name);
  f.resize(7, ' ');
  return f + " ";
}

TEST(Log, LevelParseKnowsEveryNameInAnyCase) {
  EXPECT_EQ(WEFT_LOG_ERROR, weft_log_level_parse("error"));
  EXPECT_EQ(WEFT_LOG_WARNING, weft_log_level_parse("warning"));
  EXPECT_EQ(WEFT_LOG_INFO, weft_log_level_parse("info"));
  EXPECT_EQ(WEFT_LOG_CANCEL, weft_log_level_parse("cancel"));
  EXPECT_EQ(WEFT_LOG_RUNTIME, weft_log_level_parse("runtime"));
  EXPECT_EQ(WEFT_LOG_DEBUG, weft_log_level_parse("debug"));
  EXPECT_EQ(WEFT_LOG_TRACE, weft_log_level_parse("trace"));
  EXPECT_EQ(WEFT_LOG_ERROR, weft_log_level_parse("ERROR"));
  EXPECT_EQ(WEFT_LOG_DEBUG, weft_log_level_parse("Debug"));
  EXPECT_EQ(WEFT_LOG_RUNTIME, weft_log_level_parse("rUnTiMe"));
}

TEST(Log, LevelParseAcceptsWarnAsWarning) {
  EXPECT_EQ(WEFT_LOG_WARNING, weft_log_level_parse("warn"));
  EXPECT_EQ(WEFT_LOG_WARNING, weft_log_level_parse("WARN"));
}

TEST(Log, LevelParseAcceptsADigitPerLevel) {
  for (int i = WEFT_LOG_ERROR; i <= WEFT_LOG_TRACE; i++) {
    char s[2] = {static_cast<char>('0' + i), '\0'};
    EXPECT_EQ(i, weft_log_level_parse(s)) << s;
  }
}

TEST(Log, LevelParseRejectsJunkWithMinusOne) {
  for (const char *junk :
       {"", "7", "9", "10", "00", "-1", "errors", "err", "warnings", " info",
        "info ", "debug\n", "x", "trace1", "w"}) {
    EXPECT_EQ(-1, weft_log_level_parse(junk)) << '"' << junk << '"';
  }
  EXPECT_EQ(-1, weft_log_level_parse(nullptr));
}

TEST(Log, SetLevelClampsOutOfRangeValues) {
  CapturedLog cap;  // restores the threshold
  weft_log_set_level(100);
  EXPECT_EQ(WEFT_LOG_TRACE, CapturedLog::Threshold());
  EXPECT_TRUE(weft_log_enabled(WEFT_LOG_TRACE));
  weft_log_set_level(-5);
  EXPECT_EQ(WEFT_LOG_ERROR, CapturedLog::Threshold());
  EXPECT_TRUE(weft_log_enabled(WEFT_LOG_ERROR));
  EXPECT_FALSE(weft_log_enabled(WEFT_LOG_WARNING));
}

TEST(Log, DisabledLevelDoesNotEvaluateItsArguments) {
  CapturedLog cap;
  weft_log_set_level(WEFT_LOG_WARNING);
  int evaluated = 0;
  WEFT_LOG(WEFT_LOG_DEBUG, "never %d", ++evaluated);
  WEFT_LOG(WEFT_LOG_INFO, "never %d", ++evaluated);
  EXPECT_EQ(0, evaluated);
  EXPECT_TRUE(cap.Lines().empty());
  WEFT_LOG(WEFT_LOG_WARNING, "once %d", ++evaluated);
  EXPECT_EQ(1, evaluated);
  auto lines = cap.Lines();
  ASSERT_EQ(1u, lines.size());
  EXPECT_NE(std::string::npos, lines[0].find("once 1"));
}

TEST(Log, SinkGetsWholeLinesWithTimeAndLevelName) {
  CapturedLog cap;
  weft_log_set_level(WEFT_LOG_TRACE);
  const char *names[] = {"error",   "warning", "info", "cancel",
                         "runtime", "debug",   "trace"};
  for (int lvl = WEFT_LOG_ERROR; lvl <= WEFT_LOG_TRACE; lvl++)
    WEFT_LOG(lvl, "message %d of %s", lvl, "test");
  auto lines = cap.Lines();
  ASSERT_EQ(7u, lines.size());
  for (int lvl = 0; lvl < 7; lvl++) {
    // "HH:MM:SS.uuuuuu <level padded to 7> message": no uid from a thread
    // that is not running a handler, no trailing newline.
    EXPECT_EQ(LevelField(names[lvl]) + "message " + std::to_string(lvl) +
                  " of test",
              AfterTime(lines[lvl]));
    EXPECT_EQ(std::string::npos, lines[lvl].find('['));
  }
}

TEST(Log, LinesAboveTheThresholdAreNotWritten) {
  CapturedLog cap;
  weft_log_set_level(WEFT_LOG_INFO);
  WEFT_LOG(WEFT_LOG_INFO, "kept");
  WEFT_LOG(WEFT_LOG_ERROR, "kept too");
  WEFT_LOG(WEFT_LOG_CANCEL, "dropped");
  WEFT_LOG(WEFT_LOG_TRACE, "dropped");
  auto lines = cap.Lines();
  ASSERT_EQ(2u, lines.size());
  EXPECT_NE(std::string::npos, lines[0].find(" info "));
  EXPECT_NE(std::string::npos, lines[1].find(" error "));
}

TEST(Log, LongMessageIsTruncatedNotOverrun) {
  CapturedLog cap;
  weft_log_set_level(WEFT_LOG_WARNING);
  std::string big(5000, 'x');
  WEFT_LOG(WEFT_LOG_WARNING, "%s", big.c_str());
  auto lines = cap.Lines();
  ASSERT_EQ(1u, lines.size());
  EXPECT_LT(lines[0].size(), 1024u);
  EXPECT_GT(lines[0].size(), 900u);
  EXPECT_EQ('x', lines[0].back());
}

TEST(Log, InitFromEnvHonoursWeftLog) {
  CapturedLog cap;  // restores the threshold
  weft_log_set_level(WEFT_LOG_WARNING);
  {
    ScopedEnv env("WEFT_LOG", "debug");
    EXPECT_EQ(WEFT_LOG_DEBUG, weft_log_init_from_env());
    EXPECT_TRUE(weft_log_enabled(WEFT_LOG_DEBUG));
    EXPECT_FALSE(weft_log_enabled(WEFT_LOG_TRACE));
  }
  {
    ScopedEnv env("WEFT_LOG", "0");
    EXPECT_EQ(WEFT_LOG_ERROR, weft_log_init_from_env());
  }
  {
    ScopedEnv env("WEFT_LOG", "Warn");
    EXPECT_EQ(WEFT_LOG_WARNING, weft_log_init_from_env());
  }
}

TEST(Log, InitFromEnvKeepsTheThresholdWhenUnsetOrInvalid) {
  CapturedLog cap;
  weft_log_set_level(WEFT_LOG_INFO);
  {
    ScopedEnv env("WEFT_LOG", "loud");
    EXPECT_EQ(WEFT_LOG_INFO, weft_log_init_from_env());
  }
  {
    ScopedEnv env("WEFT_LOG", nullptr);
    EXPECT_EQ(WEFT_LOG_INFO, weft_log_init_from_env());
  }
  EXPECT_EQ(WEFT_LOG_INFO, CapturedLog::Threshold());
}

TEST(Log, RuntimeOpenTakesTheLevelFromWeftLogByDefault) {
  CapturedLog cap;
  weft_log_set_level(WEFT_LOG_WARNING);
  ScopedEnv env("WEFT_LOG", "trace");
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.workers = 1;
  weft_runtime *rt = nullptr;
  ASSERT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt));
  EXPECT_EQ(WEFT_LOG_TRACE, CapturedLog::Threshold());
  ASSERT_EQ(WEFT_OK, weft_runtime_close(rt, nullptr));

  // An explicit level wins over the environment.
  cfg.log_level = WEFT_LOG_ERROR;
  ASSERT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt));
  EXPECT_EQ(WEFT_LOG_ERROR, CapturedLog::Threshold());
  ASSERT_EQ(WEFT_OK, weft_runtime_close(rt, nullptr));
}

// BUG: weft_config.log_level documents "negative: take it from the WEFT_LOG
// environment variable, else WEFT_LOG_WARNING", but weft_runtime_open()
// (runtime/runtime.c) only calls weft_log_init_from_env(), which leaves the
// threshold alone when WEFT_LOG is unset or invalid: whatever level an
// earlier runtime or caller set stays in force instead of WARNING.
TEST(Log, RuntimeOpenWithoutWeftLogFallsBackToWarning) {
  CapturedLog cap;  // restores the threshold
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.workers = 1;
  ASSERT_LT(cfg.log_level, 0);
  for (const char *value : {static_cast<const char *>(nullptr), "loud"}) {
    SCOPED_TRACE(value ? value : "(unset)");
    ScopedEnv env("WEFT_LOG", value);
    weft_log_set_level(WEFT_LOG_TRACE);  // e.g. left by an earlier runtime
    weft_runtime *rt = nullptr;
    ASSERT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt));
    EXPECT_EQ(WEFT_LOG_WARNING, CapturedLog::Threshold());
    ASSERT_EQ(WEFT_OK, weft_runtime_close(rt, nullptr));
  }
}

// ---- lines written from handlers ----

struct LogState {
  weft::testing::Latch done{1};
};

void LoggingHandler(weft_turn *turn, weft_msg *m, void *) {
  WEFT_LOG(WEFT_LOG_WARNING, "in handler word=%llu",
           static_cast<unsigned long long>(m->word));
  weft_msg_free(m);
  weft_exit(turn);
}

void LoggingExit(weft_aid, void *state, weft_exit_reason) {
  static_cast<LogState *>(state)->done.CountDown();
}

class LogRuntimeTest : public weft::testing::RuntimeTest {
 protected:
  void Configure(weft_config *cfg) override {
    cfg->log_level = WEFT_LOG_WARNING;
  }
};

TEST_F(LogRuntimeTest, LineFromAHandlerCarriesTheActorsUid) {
  CapturedLog cap;
  LogState st;
  weft_spawn_opts o{};
  o.name = "logger";
  o.handler = LoggingHandler;
  o.on_exit = LoggingExit;
  o.state = &st;
  weft_aid aid;
  ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &o, &aid));
  weft_uid uid;
  ASSERT_EQ(WEFT_OK, weft_actor_uid(rt_, aid, &uid));
  char hex[16];
  snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", uid.uuid[0], uid.uuid[1],
           uid.uuid[2], uid.uuid[3]);
  char formatted[64];
  EXPECT_EQ(std::string("logger:") + hex,
            weft_uid_format(&uid, formatted, sizeof(formatted)));

  weft_msg *m = weft_msg_new(1, 0);
  m->word = 77;
  ASSERT_EQ(WEFT_OK, weft_send(rt_, aid, m));
  ASSERT_TRUE(st.done.WaitFor());
  WEFT_LOG(WEFT_LOG_WARNING, "outside");

  auto lines = cap.Lines();
  ASSERT_EQ(2u, lines.size());
  EXPECT_EQ(std::string("warning [logger:") + hex + "] in handler word=77",
            AfterTime(lines[0]));
  // The uid is the handler's only: the test thread's line has none.
  EXPECT_EQ(std::string::npos, lines[1].find('[')) << lines[1];
}

}  // namespace
