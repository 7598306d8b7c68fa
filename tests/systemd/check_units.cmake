# Checks the units as systemd would read them, with ExecStart= pointing at
# the freshly built mbqd (verify insists that it exists):
#   - `systemd-analyze verify` prints nothing at all (a misspelt key or a bad
#     value is only a warning with exit status 0, so any output fails);
#   - `systemd-analyze security --offline=true` rates mbqd.service at most
#     THRESHOLD (its --threshold is on a 0-100 scale: exposure x 10);
#   - systemd-sysusers accepts the sysusers.d snippet (dry run).
# cmake -DANALYZE=... -DSYSUSERS=... -DSRC=systemd/ -DMBQD=... -DOUT=dir
#       -DTHRESHOLD=2.5 -P check_units.cmake
if(NOT ANALYZE)
  message(FATAL_ERROR "systemd-analyze not found: install the 'systemd' package "
                      "(scripts/install-deps.sh does)")
endif()
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
set(MBQD_EXECUTABLE ${MBQD})
configure_file(${SRC}/mbqd.service.in ${OUT}/mbqd.service @ONLY)
configure_file(${SRC}/mbqd.socket ${OUT}/mbqd.socket COPYONLY)

execute_process(COMMAND ${ANALYZE} verify ${OUT}/mbqd.socket ${OUT}/mbqd.service
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT "${out}${err}" STREQUAL "")
  message(FATAL_ERROR "systemd-analyze verify (exit ${rc}) must print nothing:\n${out}${err}")
endif()
message(STATUS "systemd-analyze verify: clean")

string(REPLACE "." ";" parts "${THRESHOLD}")
execute_process(COMMAND ${ANALYZE} security --offline=true ${OUT}/mbqd.service
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(REGEX MATCH "Overall exposure level for mbqd.service: ([0-9]+)\\.([0-9])" m "${out}${err}")
if(NOT m)
  message(FATAL_ERROR "systemd-analyze security: no exposure level in:\n${out}${err}")
endif()
set(score "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
math(EXPR score10 "${CMAKE_MATCH_1} * 10 + ${CMAKE_MATCH_2}")
list(GET parts 0 t1)
list(LENGTH parts np)
if(np GREATER 1)
  list(GET parts 1 t2)
else()
  set(t2 0)
endif()
math(EXPR limit10 "${t1} * 10 + ${t2}")
if(score10 GREATER limit10)
  message(FATAL_ERROR "systemd-analyze security: exposure ${score} > ${THRESHOLD}:\n${out}")
endif()
# The same through the tool's own threshold (0-100 scale).
execute_process(COMMAND ${ANALYZE} security --offline=true --threshold=${limit10}
                        ${OUT}/mbqd.service
  OUTPUT_QUIET ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "systemd-analyze security --threshold=${limit10} failed (${rc})")
endif()
message(STATUS "systemd-analyze security: exposure ${score} (limit ${THRESHOLD})")

if(SYSUSERS)
  file(MAKE_DIRECTORY ${OUT}/root)
  execute_process(COMMAND ${SYSUSERS} --dry-run --root=${OUT}/root ${SRC}/mbq.sysusers
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT "${out}${err}" MATCHES "Creating user 'mbq'")
    message(FATAL_ERROR "systemd-sysusers rejects mbq.sysusers (exit ${rc}):\n${out}${err}")
  endif()
  message(STATUS "systemd-sysusers: mbq.sysusers creates user and group mbq")
endif()
