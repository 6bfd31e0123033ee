# Runs one example program and compares its standard output with the
# expected one: cmake -DPROGRAM=... -DEXPECTED=... -DPOOL_DIR=... -P run_example.cmake
#
# The program gets POOL_DIR as its only argument (programs that take a pool
# directory use it; the others ignore it).

if(NOT EXISTS "${EXPECTED}")
	message(FATAL_ERROR "no expected output: ${EXPECTED} does not exist")
endif()
execute_process(COMMAND "${PROGRAM}" "${POOL_DIR}"
	OUTPUT_VARIABLE output
	ERROR_VARIABLE errors
	RESULT_VARIABLE status)
file(READ "${EXPECTED}" expected)
message("${output}")
if(NOT status EQUAL 0)
	message(FATAL_ERROR "${PROGRAM} exited with ${status}:\n${errors}")
endif()
if(NOT output STREQUAL expected)
	message(FATAL_ERROR "the output differs from ${EXPECTED}, which holds:\n"
		"${expected}\n(standard error:\n${errors})")
endif()
