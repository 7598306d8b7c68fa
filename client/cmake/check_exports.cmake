# Checks that a shared library exports exactly the functions the public
# headers declare: run as
#   cmake -DNM=nm -DLIB=libmbq.so -DHEADERS="a.h;b.h" -P check_exports.cmake
# Fails on any exported symbol that is not declared (a leak of internals)
# and on any declared function that is not exported (an unimplemented one).
foreach(var NM LIB HEADERS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_exports: ${var} not set")
  endif()
endforeach()

set(declared "")
foreach(h ${HEADERS})
  file(READ "${h}" text)
  # drop comments, which mention functions too
  string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" text "${text}")
  string(REGEX MATCHALL "mbq_[A-Za-z0-9_]+[ \t\n]*\\(" calls "${text}")
  foreach(c ${calls})
    string(REGEX REPLACE "[ \t\n]*\\($" "" c "${c}")
    list(APPEND declared "${c}")
  endforeach()
endforeach()
list(REMOVE_DUPLICATES declared)
list(SORT declared)

execute_process(COMMAND "${NM}" -D --defined-only "${LIB}"
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_exports: ${NM} failed on ${LIB}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(exported "")
foreach(line ${lines})
  if(line MATCHES "^[0-9a-fA-F]* *([A-Za-z]) ([^ @]+)")
    set(type "${CMAKE_MATCH_1}")
    set(name "${CMAKE_MATCH_2}")
    if(type STREQUAL "A" AND name MATCHES "^MBQ_[0-9.]+$")
      continue() # the version node of libmbq.map
    endif()
    list(APPEND exported "${name}")
  endif()
endforeach()
list(REMOVE_DUPLICATES exported)
list(SORT exported)

set(extra ${exported})
list(REMOVE_ITEM extra ${declared})
set(missing ${declared})
list(REMOVE_ITEM missing ${exported})
list(LENGTH exported n)
if(extra OR missing OR n EQUAL 0)
  message(FATAL_ERROR "check_exports: ${LIB}\n  exported but not declared: ${extra}\n"
                      "  declared but not exported: ${missing}")
endif()
message(STATUS "check_exports: ${n} symbols, all mbq_*, all declared")
