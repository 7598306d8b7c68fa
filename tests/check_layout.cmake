# The shared-memory layout is known to shm/ alone: the daemon, the library,
# mbqctl and the examples reach segments through the functions of shm/, and
# the layout structs are incomplete types outside the *_layout.h headers.
# This check fails when production code outside shm/ includes one of those
# headers (tests that play a hostile client, scribbling on a segment, may).
#   cmake -DROOT=<source dir> -P check_layout.cmake
file(GLOB_RECURSE sources RELATIVE ${ROOT}
     ${ROOT}/client/*.c ${ROOT}/client/*.h ${ROOT}/daemon/*.c ${ROOT}/daemon/*.h
     ${ROOT}/proto/*.c ${ROOT}/proto/*.h ${ROOT}/examples/*.c ${ROOT}/examples/*.h
     ${ROOT}/gst/*.c ${ROOT}/gst/*.h)
# The plugin's tests are tests: they may play a hostile client too.
list(FILTER sources EXCLUDE REGEX "^gst/tests/")
file(GLOB layouts RELATIVE ${ROOT}/shm ${ROOT}/shm/*_layout.h)
if(NOT layouts)
  message(FATAL_ERROR "no shm/*_layout.h found under ${ROOT}: is ROOT the source tree?")
endif()
list(LENGTH sources n)
if(n LESS 20)
  message(FATAL_ERROR "only ${n} sources found under ${ROOT}: is ROOT the source tree?")
endif()
set(bad "")
foreach(f ${sources})
  file(STRINGS ${ROOT}/${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]*/)?[a-z]+_layout\\.h[>\"]")
  foreach(l ${lines})
    string(APPEND bad "  ${f}: ${l}\n")
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "code outside shm/ includes a shared-memory layout header "
                      "(use the functions of shm/ instead):\n${bad}")
endif()
list(LENGTH layouts nl)
message(STATUS "layout private: ${n} files outside shm/ include none of the ${nl} layout headers")
