// Entry point of the shared library. The exports live in api.cpp (linked whole from
// kairos_bridge_core); DllMain does nothing: threads are started by kb_open and joined by kb_close,
// never under the loader lock.
#if defined(_WIN32)
#include <windows.h>

extern "C" BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID) {
  if (reason == DLL_PROCESS_ATTACH) DisableThreadLibraryCalls(instance);
  return TRUE;
}
#endif
