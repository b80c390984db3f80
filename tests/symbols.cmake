# libdpool.so exports dpool.h's functions and nothing else (include/dpool.map).
add_test (NAME library_exports_only_the_public_api
    COMMAND ${CMAKE_COMMAND} -DLIB=$<TARGET_FILE:dpool> -DHEADER=${PROJECT_SOURCE_DIR}/include/dpool.h
            -DPREFIX=dpool_ -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exports.cmake)
set_tests_properties (library_exports_only_the_public_api PROPERTIES TIMEOUT 60)
