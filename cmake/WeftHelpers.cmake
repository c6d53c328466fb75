# Warning flags, the sanitizer switch and the test helper.

if(WEFT_SANITIZER STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(WEFT_SANITIZER STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT WEFT_SANITIZER STREQUAL "none")
  message(FATAL_ERROR "WEFT_SANITIZER must be none, address or thread")
endif()

function(weft_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra
    $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes -Wmissing-prototypes>)
  if(WEFT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# weft_add_gtest(name SOURCES a.cc b.cc [TIMEOUT s] [LABELS l])
# One label per test: gtest_discover_tests flattens a list of them into
# set_tests_properties, where only the first survives. ctest -L/-LE take
# regular expressions, so compound names select: "concurrent" matches
# net_concurrent too, "fork" matches net_fork and process_fork.
# Every test gets a timeout so that a hang fails instead of stalling CI.
function(weft_add_gtest name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 120)
  endif()
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE weft_internal GTest::gtest_main)
  weft_target_warnings(${name})
  gtest_discover_tests(${name}
    DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${A_TIMEOUT} LABELS "${A_LABELS}")
endfunction()
