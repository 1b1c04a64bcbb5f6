# MT5 bridge (issue #3): Windows DLL under Wine, the command-decoder fuzz run, the bridge benchmark,
# and the MQL5/header drift check. See docs/bridge.md.
APT_PACKAGES += mingw-w64 g++-mingw-w64-x86-64-posix wine wine64 clang libclang-rt-14-dev dpkg-dev
