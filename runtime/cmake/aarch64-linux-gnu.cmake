# Cross-building the runtime for 64-bit ARM Linux (Raspberry Pi 4 / 5, phones' and boards' cores) on an x86-64
# Debian host with its cross compiler (package g++-aarch64-linux-gnu). The tests run under user-mode emulation
# (package qemu-user), which CMake uses as CMAKE_CROSSCOMPILING_EMULATOR (ctest; runtime/tests/run_aarch64.sh
# calls qemu itself):
#
#   cmake -S runtime -B build/runtime-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=runtime/cmake/aarch64-linux-gnu.cmake
#   cmake --build build/runtime-aarch64 -j2 --target runtime_tests
#   qemu-aarch64 -L /usr/aarch64-linux-gnu build/runtime-aarch64/runtime_tests
#
# CMAKE_SYSTEM_PROCESSOR aarch64 makes CMakeLists.txt compile the NEON kernel file and no x86 file.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(BNEXT_AARCH64_TRIPLE aarch64-linux-gnu CACHE STRING "the cross toolchain's target triple (compiler prefix)")
set(BNEXT_AARCH64_SYSROOT /usr/${BNEXT_AARCH64_TRIPLE} CACHE PATH "the target's libraries (Debian's cross packages)")
set(CMAKE_C_COMPILER ${BNEXT_AARCH64_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${BNEXT_AARCH64_TRIPLE}-g++)

# Headers and libraries from the target's tree only; programs (ninja, python) from the host.
set(CMAKE_FIND_ROOT_PATH ${BNEXT_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(BNEXT_QEMU_AARCH64 qemu-aarch64)
if(BNEXT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${BNEXT_QEMU_AARCH64} -L ${BNEXT_AARCH64_SYSROOT})
endif()
