# libdpool.so exports dpool.h's functions and nothing else (include/dpool.map).
add_test (NAME library_exports_only_the_public_api
    COMMAND ${CMAKE_COMMAND} -DLIB=$<TARGET_FILE:dpool> -DHEADER=${PROJECT_SOURCE_DIR}/include/dpool.h
            -DPREFIX=dpool_ -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exports.cmake)
set_tests_properties (library_exports_only_the_public_api PROPERTIES TIMEOUT 60)

# Each folder includes only its own headers and those of the layers below
# it (CMakeLists.txt); the build would fail too, this names the line.
add_test (NAME layers_include_only_layers_below
    COMMAND ${CMAKE_COMMAND} -DROOT=${PROJECT_SOURCE_DIR} -P ${CMAKE_CURRENT_SOURCE_DIR}/check_layers.cmake)
set_tests_properties (layers_include_only_layers_below PROPERTIES TIMEOUT 60)
